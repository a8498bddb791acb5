#!/usr/bin/env python3
"""Simulates the synchronization of gemm_hopper.cu's ping-pong kernel (no GPU needed).

One block: the producer thread and the two consumer warp groups run as coroutines, interleaved at random at
every barrier operation, with mbarriers modelled by their PTX semantics (a phase completes when its
arrivals reach the count, try_wait.parity(p) succeeds once the phase with parity p has completed, so a
fresh barrier passes a wait on parity 1) and TMA copies that land after a random delay. The coroutines
follow the kernel line by line: the ring of S stages, the full / empty barriers (one arrival frees a
stage), the two ordering barriers, and the ring position (2n + g) * kTiles of group g's n-th tile.

Checked on every schedule: no deadlock; a consumer reads a stage only when it holds that iteration's
tiles (landed, not yet overwritten); the producer refills a stage only after its consumer released it;
the two groups' main loops never overlap (the ordering barrier's purpose); every tile computed once.
Run: /usr/bin/python3 native/cuda/dev/simulate_pingpong.py   (a few seconds). Not part of any build.
"""
import random
import sys


class Barrier:
    def __init__(self, count):
        self.count, self.arrived, self.phase = count, 0, 0  # phase: the current (incomplete) phase number

    def arrive(self):
        self.arrived += 1
        if self.arrived == self.count:
            self.arrived, self.phase = 0, self.phase + 1

    def done(self, parity):
        """try_wait.parity: has the phase with this parity completed? (The current phase is incomplete.)"""
        return (self.phase & 1) != parity


class Fail(Exception):
    pass


def simulate(S, k_tiles, tiles, grid, block, seed):
    rng = random.Random(seed)
    full = [Barrier(1) for _ in range(S)]
    empty = [Barrier(1) for _ in range(S)]
    order = [Barrier(1), Barrier(1)]
    stage = [None] * S        # the iteration whose tiles the stage holds once landed
    landing = []              # (iteration, stage) copies in flight
    in_use = [None] * S       # the iteration a consumer is reading from the stage
    computing = set()         # groups inside their main loop
    done_tiles = []

    def wait(bar, parity):
        while not bar.done(parity):
            yield

    def producer():
        it = 0
        for t in range(block, tiles, grid):
            for kt in range(k_tiles):
                s = it % S
                yield from wait(empty[s], ((it // S) & 1) ^ 1)
                if in_use[s] is not None:
                    raise Fail(f"producer refills stage {s} (iteration {it}) while iteration {in_use[s]} reads it")
                stage[s] = None
                landing.append((it, s))  # expect_tx + two TMA loads: full[s] completes when they land
                it += 1
                yield

    def consumer(g):
        n = 0
        for t in range(block + g * grid, tiles, 2 * grid):
            if g == 1:
                yield from wait(order[1], n & 1)
            elif n > 0:
                yield from wait(order[0], (n - 1) & 1)
            if computing:
                raise Fail(f"group {g} starts its main loop while group {computing} is in its own")
            computing.add(g)
            it = (2 * n + g) * k_tiles
            prev = None
            for kt in range(k_tiles):
                s = it % S
                yield from wait(full[s], (it // S) & 1)
                if stage[s] != it:
                    raise Fail(f"group {g} reads stage {s} for iteration {it} but it holds {stage[s]}")
                in_use[s] = it
                yield  # the wgmma reads the stage
                if prev is not None:  # wgmma.wait_group 1: the previous stage is free
                    in_use[prev] = None
                    empty[prev].arrive()
                prev = s
                it += 1
            in_use[prev] = None
            empty[prev].arrive()
            computing.discard(g)
            order[g ^ 1].arrive()
            done_tiles.append(t)
            yield  # the epilogue
            n += 1

    actors = [producer(), consumer(0), consumer(1)]
    steps = 0
    while actors or landing:
        steps += 1
        if steps > 200000:
            raise Fail("no progress: deadlock")
        if landing and (not actors or rng.random() < 0.3):
            it, s = landing.pop(rng.randrange(len(landing)) if rng.random() < 0.2 else 0)
            stage[s] = it
            full[s].arrive()
            continue
        a = rng.choice(actors)
        try:
            next(a)
        except StopIteration:
            actors.remove(a)
    want = list(range(block, tiles, grid))
    if sorted(done_tiles) != want:
        raise Fail(f"tiles computed {sorted(done_tiles)}, want {want}")


def main():
    failures = 0
    cases = 0
    for S in (4, 5, 6):
        for k_tiles in (1, 2, 3, 5, 6, 7, 13, 32):
            for tiles, grid, block in ((1, 1, 0), (2, 1, 0), (7, 2, 1), (9, 2, 0), (25, 4, 3), (40, 3, 2)):
                for seed in range(6):
                    cases += 1
                    try:
                        simulate(S, k_tiles, tiles, grid, block, seed)
                    except Fail as e:
                        failures += 1
                        if failures <= 5:
                            print(f"FAIL S{S} kTiles{k_tiles} tiles{tiles} grid{grid} block{block} seed{seed}: {e}")
    print(f"{cases - failures} of {cases} schedules ran clean" if failures == 0 else f"{failures} of {cases} schedules FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
