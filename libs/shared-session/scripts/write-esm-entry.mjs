// Writes dist/index.mjs and dist/index.d.mts, the package's ESM entry: a thin
// wrapper that re-exports the CommonJS build by name. There is one build, not
// two, so an app that both imports and requires the package (an ESM app whose
// test runner is CommonJS, say) still loads one copy: one SharedSessionModule
// for Nest's injector and one set of request markers (module-local Symbols).
// The names come from the built CommonJS module, so the two entries cannot
// drift apart; `export const { ... }` spells them out so that Node never has to
// guess them from the CommonJS source.
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const dist = new URL('../dist/', import.meta.url);
const names = Object.keys(createRequire(dist)('./index.js')).sort();
if (names.length === 0) throw new Error('dist/index.js exports nothing: build it first');

writeFileSync(
  new URL('index.mjs', dist),
  `import entry from './index.js';\n\nexport const {\n${names.map((n) => `  ${n},\n`).join('')}} = entry;\n`,
);
writeFileSync(new URL('index.d.mts', dist), `export * from './index.js';\n`);
