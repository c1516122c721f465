/** One jest run for every TypeScript suite: library unit and integration specs,
 * the nginx/Lua specs under resty/t, and the end-to-end specs. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/libs', '<rootDir>/apps', '<rootDir>/resty', '<rootDir>/e2e', '<rootDir>/reliability'],
  testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'],
  transform: {
    // tsconfig.json sets isolatedModules, so ts-jest only transpiles;
    // type-checking is done once by `tsc --noEmit` in scripts/test.sh.
    '^.+\\.ts$': 'ts-jest',
  },
  moduleNameMapper: {
    '^nest-resty-shared-session$': '<rootDir>/libs/shared-session/src',
  },
  testTimeout: 30000,
};
