// Which addresses a run uses: the one rank 0's store binds (MASTER_ADDR's, nothing wider), and the one each
// rank's Gloo listens on for its peers (loopback on one machine; otherwise GLOO_SOCKET_IFNAME's interface,
// as torch reads it, or the address this machine reaches MASTER_ADDR from).
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

export function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.') || address === 'localhost';
}

/** MASTER_ADDR as an address to bind or connect to (a host name is looked up, IPv4 first). */
export async function resolveHost(host: string): Promise<string> {
  if (isIP(host)) return host;
  try {
    return (await lookup(host, { family: 4 })).address;
  } catch {
    try {
      return (await lookup(host)).address;
    } catch (err) {
      throw new Error(`MASTER_ADDR=${host} cannot be resolved: ${(err as Error).message}`);
    }
  }
}

/** The local address that routes to `target` (no packet is sent: a UDP socket is only connected). */
export function localAddressFor(target: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIP(target) === 6 ? 'udp6' : 'udp4');
    socket.once('error', (err) => {
      socket.close();
      reject(new Error(`no route from this machine to MASTER_ADDR ${target}: ${err.message}`));
    });
    socket.connect(9, target, () => {
      const { address } = socket.address();
      socket.close();
      resolve(address);
    });
  });
}

/** Where this rank's Gloo listens: { iface } from GLOO_SOCKET_IFNAME, else { hostname }. */
export async function glooListenAddress(masterAddress: string, env: Record<string, string | undefined> = process.env): Promise<{ hostname?: string; iface?: string }> {
  const iface = env.GLOO_SOCKET_IFNAME?.split(',')[0]?.trim();
  if (iface) return { iface };
  if (isLoopback(masterAddress)) return { hostname: masterAddress === '::1' ? '::1' : '127.0.0.1' };
  return { hostname: await localAddressFor(masterAddress) };
}
