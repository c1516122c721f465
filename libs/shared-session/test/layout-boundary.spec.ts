import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

/**
 * The one-layout-one-place rule, checked on the library's source: outside
 * src/layouts/ no code asks which key layout (v1, cluster, compact) or which
 * topology (one Redis, Cluster) it runs on, by name, flag or instanceof:
 * every difference is a method of the layout object. And no Redis script is
 * written in TypeScript (they are .lua files, resty/lib/resty/shared_session/scripts/),
 * and no source file is over 450 lines.
 */

const SRC = join(__dirname, '../src');

/** What asks for a layout or a topology, each with why it is refused. */
const LAYOUT_BRANCHES: [RegExp, string][] = [
  [/\bkeyLayout\s*[!=]==|[!=]==\s*\w*\.?keyLayout\b/, 'compares keyLayout'],
  [/[!=]==?\s*['"`](v1|cluster|compact)['"`]/, 'compares with a layout name'],
  [/['"`](v1|cluster|compact)['"`]\s*[!=]==?/, 'compares with a layout name'],
  [/\bcase\s+['"`](v1|cluster|compact)['"`]/, 'switches on a layout name'],
  [/\binstanceof\s+(Cluster|Redis)\b/, 'tests the topology with instanceof'],
  [/\.(compact|controlled)\b/, 'reads a layout flag (.compact, .controlled)'],
  [/\.isCluster\b/, 'reads the topology flag isCluster'],
];

/** The library's own source: every .ts under src/ but the specs and the build's generated module. */
function sourceFiles(): string[] {
  return (readdirSync(SRC, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts') && !f.endsWith('.generated.ts'))
    .map((f) => f.split(sep).join('/'))
    .sort();
}

/** Every line of `source` that asks for a layout or a topology: `<line>: <why>: <code>`. */
export function layoutBranches(source: string): string[] {
  const found: string[] = [];
  source.split('\n').forEach((line, i) => {
    const code = line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, ''); // comments may name the layouts
    for (const [pattern, why] of LAYOUT_BRANCHES) if (pattern.test(code)) found.push(`${i + 1}: ${why}: ${line.trim()}`);
  });
  return found;
}

describe('the key layouts are objects (src/layouts/): nothing else asks which one runs', () => {
  it('finds a branch on the layout or the topology when there is one (the check can fail)', () => {
    const planted = [
      "if (this.keyLayout === 'compact') return;",
      "const v1 = options.layout !== 'v1';",
      "if ('cluster' === name) {}",
      'if (client instanceof Cluster) {}',
      'if (this.store.controlled) {}',
      'return this.compact ? a : b;',
      "switch (layout) { case 'cluster': }",
    ];
    for (const line of planted) expect([line, layoutBranches(line).length > 0]).toEqual([line, true]);
    expect(layoutBranches("// the 'cluster' layout === section 14\nconst layout = options.layout ?? 'v1';")).toEqual([]);
  });

  // src/layouts/ is where the layouts differ; redis-client.ts is where the topologies do.
  it.each(sourceFiles().filter((f) => !f.startsWith('layouts/') && f !== 'redis-client.ts'))(
    '%s holds no layout or topology branch',
    (file) => {
      expect(layoutBranches(readFileSync(join(SRC, file), 'utf8'))).toEqual([]);
    },
  );

  it('every layout is a module of src/layouts/', () => {
    const layouts = sourceFiles().filter((f) => f.startsWith('layouts/'));
    expect(layouts).toEqual(
      expect.arrayContaining(['layouts/v1.ts', 'layouts/cluster.ts', 'layouts/compact.ts', 'layouts/session-layout.ts']),
    );
  });
});

describe('the library source', () => {
  it.each(sourceFiles())('%s holds no Redis script (no redis.call)', (file) => {
    expect(readFileSync(join(SRC, file), 'utf8')).not.toContain('redis.call(');
  });

  it('has no file over 450 lines (specs included)', () => {
    const all = (readdirSync(SRC, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts') && !f.endsWith('.generated.ts'));
    const long = all
      .map((f) => [relative(SRC, join(SRC, f)), readFileSync(join(SRC, f), 'utf8').split('\n').length - 1] as const)
      .filter(([, lines]) => lines > 450);
    expect(long).toEqual([]);
  });
});
