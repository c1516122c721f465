import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';

/**
 * No import loop in the library: the graph of its relative imports and
 * re-exports (`import type` and `export type ... from` counted too, since a
 * loop of types is still two modules that cannot be understood apart) has
 * no cycle.
 */

const SRC = join(__dirname, '../src');
/** `import ... from './x'`, `import './x'`, `export ... from './x'` (one statement may span lines). */
const EDGE = /(?:^|\n|;)\s*(?:import|export)\b[^;'"]*?(?:\bfrom\s*)?['"](\.{1,2}\/[^'"]+)['"]/g;

/** The modules each module imports, by path relative to `root` without `.ts`. */
export function importGraph(files: Record<string, string>): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [file, source] of Object.entries(files)) {
    const edges = [...source.matchAll(EDGE)].map((m) => {
      const target = join(dirname(file), m[1]).split(sep).join('/');
      return files[`${target}.ts`] !== undefined ? target : `${target}/index`;
    });
    graph.set(file.replace(/\.ts$/, ''), [...new Set(edges)]);
  }
  return graph;
}

/** One cycle of the graph (its modules, the first repeated at the end), or null. */
export function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (node: string): string[] | null => {
    if (state.get(node) === 'done') return null;
    if (state.get(node) === 'open') return [...path.slice(path.indexOf(node)), node];
    state.set(node, 'open');
    path.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    path.pop();
    state.set(node, 'done');
    return null;
  };
  for (const node of graph.keys()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return null;
}

function librarySources(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const f of readdirSync(SRC, { recursive: true }) as string[]) {
    if (f.endsWith('.ts') && !f.endsWith('.spec.ts')) files[f.split(sep).join('/')] = readFileSync(join(SRC, f), 'utf8');
  }
  return files;
}

describe('the import graph of the library', () => {
  it('finds a loop when there is one, through `import type` and re-exports too (the check can fail)', () => {
    const planted = {
      'a.ts': "import { b } from './b';\n",
      'b.ts': "import type {\n  C,\n} from './layouts/c';\n",
      'layouts/c.ts': "export { a } from '../a';\n",
      'd.ts': "import { a } from './a';\nimport Redis from 'ioredis';\n",
    };
    expect(findCycle(importGraph(planted))).toEqual(['a', 'b', 'layouts/c', 'a']);
    expect(findCycle(importGraph({ ...planted, 'layouts/c.ts': 'export const c = 1;\n' }))).toBeNull();
  });

  it('resolves every relative import to a module of src/', () => {
    const graph = importGraph(librarySources());
    const missing = [...graph].flatMap(([from, to]) =>
      to.filter((t) => !existsSync(resolve(SRC, `${t}.ts`))).map((t) => `${from} -> ${t}`),
    );
    expect(missing).toEqual([]);
    expect(graph.get('flask-redis-session.store')).toEqual(expect.arrayContaining(['layouts/create-session-layout', 'session-repository']));
  });

  it('has no loop', () => {
    const cycle = findCycle(importGraph(librarySources()));
    expect(cycle && cycle.join(' -> ')).toBeNull();
  });
});
