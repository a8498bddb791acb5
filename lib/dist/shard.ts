// How a global batch (or a list of evaluation batches) is shared out: rank r of W takes the contiguous
// range [floor(r·n/W), floor((r+1)·n/W)), so the ranks' shares are disjoint, cover everything, and differ
// in size by at most one.

export function shareOf(total: number, rank: number, worldSize: number): { start: number; end: number } {
  return { start: Math.floor((rank * total) / worldSize), end: Math.floor(((rank + 1) * total) / worldSize) };
}
