import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Ports this process handed out. The OS may give a just-closed port again, and
 * a stack asks for several before any of its servers binds one (the app's,
 * then Redis's, then nginx's): each is handed out once per process.
 */
const handedOut = new Set<number>();

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it). It is
 * not reserved: until the caller's server binds it, another process may take
 * it. The servers of stack/ check that the port they wait on is held by their
 * own process (`listensOn`), so that they fail, naming the port, rather than
 * talk to someone else's server.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await osPort();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

function osPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The Linux tables of TCP sockets; elsewhere `listensOn` cannot tell. */
const TCP_TABLES = ['/proc/net/tcp', '/proc/net/tcp6'];
const LISTEN = '0A';

/**
 * Whether the process `pid` holds a listening TCP socket on `port` (any local
 * address): true when the server that answers there is the one we started,
 * not another process that took the port between freePort() and our bind.
 * Undefined where there is no /proc to ask (not Linux).
 */
export function listensOn(pid: number | undefined, port: number): boolean | undefined {
  if (!existsSync(TCP_TABLES[0])) return undefined;
  if (pid === undefined) return false;
  const inodes = new Set<string>();
  for (const table of TCP_TABLES) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      if (fields.length < 10 || fields[3] !== LISTEN) continue;
      if (parseInt(fields[1].split(':')[1], 16) === port) inodes.add(fields[9]);
    }
  }
  if (inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false; // the process is gone
  }
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.startsWith('socket:[') && inodes.has(target.slice(8, -1))) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

/** The message of a server that could not bind its port (Node, nginx, redis-server, Python each say it their way). */
export const PORT_TAKEN = /EADDRINUSE|Address already in use/i;
