// Static checks for every TypeScript file: eslint's and typescript-eslint's
// recommended rules (no type information: fast enough for every `npm test`),
// with formatting left to prettier.
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/node_modules/**', '**/dist/**', '.vendor/**', '.run/**', 'coverage/**', 'test-results/**', '**/*.js', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  prettier,
  {
    rules: {
      // `_name` marks a value that is deliberately unused (destructuring to drop a field).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
    },
  },
  {
    // Tests read loosely typed JSON (vectors, wire responses) and use non-null assertions freely.
    files: ['**/*.spec.ts', '**/*.e2e-spec.ts', 'e2e/**', 'reliability/**', 'resty/t/**', 'bench/**', 'protocol/testkit/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off', '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
