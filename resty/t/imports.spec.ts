/**
 * The rock's tests take their oracle from the protocol (PROTOCOL.md and the
 * test kit), never from the TypeScript implementation: nothing that resty/t
 * loads, directly or through stack/ and protocol/, may come from libs/ (or
 * from the demo app in apps/). Imports are resolved as the compiler resolves
 * them, with tsconfig.json's paths, so `nest-resty-shared-session` counts too.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(__dirname, '../..');
const FORBIDDEN = ['libs', 'apps'].map((dir) => join(ROOT, dir) + '/');

function compilerOptions(): ts.CompilerOptions {
  const file = join(ROOT, 'tsconfig.json');
  const { config } = ts.readConfigFile(file, ts.sys.readFile);
  return ts.parseJsonConfigFileContent(config, ts.sys, ROOT, undefined, file).options;
}

/**
 * Every project file `entries` load, each with the chain of imports that
 * reached it. A relative import that does not resolve (libs/ moved away, say)
 * is kept as the path it names, so that it is judged all the same.
 */
function importGraph(entries: string[]): Map<string, string[]> {
  const options = compilerOptions();
  const reached = new Map<string, string[]>(entries.map((f) => [f, [f]]));
  const queue = [...entries];
  while (queue.length > 0) {
    const file = queue.shift()!;
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName } of importedFiles) {
      const resolved = ts.resolveModuleName(fileName, file, options, ts.sys).resolvedModule;
      const target = resolved ? resolved.resolvedFileName : fileName.startsWith('.') ? resolve(dirname(file), fileName) : undefined;
      if (!target || resolved?.isExternalLibraryImport || reached.has(target)) continue;
      reached.set(target, [...reached.get(file)!, target]);
      if (resolved) queue.push(target);
    }
  }
  return reached;
}

const show = (chain: string[]) => chain.map((f) => relative(ROOT, f)).join(' -> ');
const forbidden = (graph: Map<string, string[]>) =>
  [...graph].filter(([f]) => FORBIDDEN.some((dir) => f.startsWith(dir))).map(([, chain]) => show(chain));

describe('the nginx specs and the library', () => {
  const entries = readdirSync(__dirname)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(__dirname, f));

  it('nothing resty/t loads comes from libs/ or apps/', () => {
    const graph = importGraph(entries);
    expect(forbidden(graph)).toEqual([]);
    // The walk does reach through stack/ and into the test kit: the check is not empty.
    expect(graph.has(join(ROOT, 'stack/nginx-server.ts'))).toBe(true);
    expect(graph.has(join(ROOT, 'protocol/testkit/signer.ts'))).toBe(true);
  });

  it('the walk sees the library behind a file that does import it (stack/nginx-conf.ts)', () => {
    const found = forbidden(importGraph([join(ROOT, 'stack/nginx-conf.ts')]));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^stack\/nginx-conf\.ts -> libs\/shared-session\/src\/shared-session\.constants/);
  });
});
