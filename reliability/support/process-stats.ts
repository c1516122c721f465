import { readFileSync } from 'node:fs';

/** What Linux says about a running process (/proc): its memory and its children. */

/** VmRSS of a process in kB, from /proc/<pid>/status. */
export function rssKb(pid: number): number {
  const match = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

/** The child processes of `pid` (nginx's workers and cache processes, for its master). */
export function childPids(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return text ? text.split(/\s+/).map(Number) : [];
}

/** nginx's worker processes (its master's children that are not the cache manager/loader). */
export function nginxWorkers(masterPid: number): number[] {
  return childPids(masterPid).filter((pid) => {
    try {
      return /worker process/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
    } catch {
      return false;
    }
  });
}

/** A Node program's live memory in kB (heapUsed + external, which holds Buffers), from process.memoryUsage() right after a full collection. */
export function liveKb(memory: NodeJS.MemoryUsage): number {
  return Math.round((memory.heapUsed + memory.external) / 1024);
}
