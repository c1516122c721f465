import { readdirSync, readFileSync } from 'node:fs';
import { join, sep } from 'node:path';

/**
 * One core, two HTTP seams (issue 25), checked on the library's source:
 * only the seams (express-http-seam.ts, fastify-http-seam.ts) and the one
 * place that chooses between them (shared-session-http.ts) ask which
 * adapter runs; a platform's packages are imported only on its side; and the
 * seams are loaded only when chosen, so that an app on one adapter never
 * loads the other's packages.
 */

const SRC = join(__dirname, '../src');

/** Where the adapter may be asked about: the seams, the choice, and the names. */
const MAY_BRANCH = new Set(['express-http-seam.ts', 'fastify-http-seam.ts', 'shared-session-http.ts', 'http-adapter-name.ts']);

/**
 * Who may import a platform's packages (a value import: the module is loaded).
 * express-session's `Store` is the base class of the store, which both sides
 * use: the one import of it outside the Express seam (see the README).
 */
const EXPRESS_SIDE = new Set(['express-http-seam.ts', 'express-session-hooks.ts', 'flask-redis-session.store.ts']);
const FASTIFY_SIDE = new Set(['fastify-http-seam.ts']);

const ADAPTER_BRANCHES: [RegExp, string][] = [
  [/[aA]dapter\w*\??\.getType\b/, "asks the HTTP adapter's type"],
  [/[!=]==?\s*['"`](express|fastify)['"`]/, 'compares with an adapter name'],
  [/['"`](express|fastify)['"`]\s*[!=]==?/, 'compares with an adapter name'],
  [/\bcase\s+['"`](express|fastify)['"`]/, 'switches on an adapter name'],
  [/\binstanceof\s+(ExpressAdapter|FastifyAdapter)\b/, 'tests the adapter with instanceof'],
  [/['"`](setHeader|header|raw)['"`]\s+in\b/, 'tells the response apart by its methods'],
];

const PLATFORM_IMPORT = /^\s*import\s+(type\s+)?[^;]*?from\s+['"]([^'"]+)['"]/gm;
const isExpressPackage = (m: string) => m === 'express' || m === 'express-session' || m === '@nestjs/platform-express';
const isFastifyPackage = (m: string) => m === 'fastify' || m.startsWith('@fastify/') || m === '@nestjs/platform-fastify';

export function adapterBranches(source: string): string[] {
  const found: string[] = [];
  source.split('\n').forEach((line, i) => {
    const code = line.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, '');
    for (const [pattern, why] of ADAPTER_BRANCHES) if (pattern.test(code)) found.push(`${i + 1}: ${why}: ${line.trim()}`);
  });
  return found;
}

/** The platform imports of a file that its side does not allow: `<module> (<value|type>)`. */
export function misplacedImports(file: string, source: string): string[] {
  const found: string[] = [];
  for (const [, type, module] of source.matchAll(PLATFORM_IMPORT)) {
    if (isFastifyPackage(module) && !FASTIFY_SIDE.has(file)) found.push(`${module} (${type ? 'type' : 'value'})`);
    // A type from Express is erased; only a value import loads it.
    if (isExpressPackage(module) && !type && !EXPRESS_SIDE.has(file)) found.push(`${module} (value)`);
  }
  // A seam is loaded when it is chosen (shared-session-http.ts requires it), never by an import.
  for (const m of source.matchAll(
    /^\s*import\s+(?!type\b)[^;]*?from\s+['"]\.\/((express|fastify)-http-seam|express-session-hooks)['"]/gm,
  )) {
    if (!(file === 'express-http-seam.ts' && m[1] === 'express-session-hooks')) {
      found.push(`./${m[1]} (value)`);
    }
  }
  return found;
}

function sourceFiles(): string[] {
  return (readdirSync(SRC, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts') && !f.endsWith('.generated.ts'))
    .map((f) => f.split(sep).join('/'))
    .sort();
}

describe('the HTTP adapters are two seams: nothing else asks which one runs', () => {
  it('finds a branch on the adapter, or a misplaced import, when there is one (the check can fail)', () => {
    const planted = [
      "if (adapter === 'fastify') return;",
      "if ('express' !== name) {}",
      "switch (type) { case 'fastify': }",
      'const kind = host.httpAdapter.getType();',
      'const kind = this.adapterHost?.httpAdapter?.getType?.();',
      'if (adapter instanceof FastifyAdapter) {}',
      "if ('setHeader' in res) res.setHeader(a, b);",
    ];
    for (const line of planted) expect([line, adapterBranches(line).length > 0]).toEqual([line, true]);
    expect(adapterBranches("// on 'fastify' === the hooks\nconst name: HttpAdapterName = 'express';")).toEqual([]);
    expect(adapterBranches("if (context.getType() !== 'http') return true;")).toEqual([]);
    expect(misplacedImports('group.guard.ts', "import type { FastifyRequest } from 'fastify';\n")).toEqual(['fastify (type)']);
    expect(misplacedImports('group.guard.ts', "import session from 'express-session';\n")).toEqual(['express-session (value)']);
    expect(misplacedImports('group.guard.ts', "import type { Request } from 'express';\n")).toEqual([]);
    expect(misplacedImports('shared-session.module.ts', "import { FastifyHttpSeam } from './fastify-http-seam';\n")).toEqual([
      './fastify-http-seam (value)',
    ]);
    expect(misplacedImports('fastify-http-seam.ts', "import type { FastifyReply } from 'fastify';\n")).toEqual([]);
  });

  it.each(sourceFiles().filter((f) => !MAY_BRANCH.has(f)))('%s holds no adapter branch', (file) => {
    expect(adapterBranches(readFileSync(join(SRC, file), 'utf8'))).toEqual([]);
  });

  it.each(sourceFiles())("%s imports a platform's packages only on its side, and no seam", (file) => {
    expect(misplacedImports(file, readFileSync(join(SRC, file), 'utf8'))).toEqual([]);
  });

  it('the two seams are the files the choice loads', () => {
    const choice = readFileSync(join(SRC, 'shared-session-http.ts'), 'utf8');
    expect(choice).toContain("require('./express-http-seam')");
    expect(choice).toContain("require('./fastify-http-seam')");
  });
});
