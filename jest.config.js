/**
 * Every TypeScript suite, as four jest projects so that a developer can run
 * the fast ones alone (`npm test -- --selectProjects unit`):
 *  - unit: the library's specs (pure logic, and its store and Nest app on a
 *    real redis-server), the protocol test kit, and the shared test helpers
 *    in stack/;
 *  - nginx: the Lua rock inside a real nginx (resty/t);
 *  - e2e: the demo stack end to end, Flask interop, the browser;
 *  - reliability: property tests, fuzzing, faults, Sentinel, soak.
 */
const common = {
  testEnvironment: 'node',
  transform: {
    // tsconfig.json sets isolatedModules, so ts-jest only transpiles;
    // type-checking is done once by `tsc --noEmit` in scripts/test.sh.
    '^.+\\.ts$': 'ts-jest',
  },
  moduleNameMapper: {
    '^nest-resty-shared-session$': '<rootDir>/libs/shared-session/src',
  },
};

module.exports = {
  testTimeout: 30000,
  // The library's Redis scripts, from their .lua files, for the specs that run its src/ directly.
  globalSetup: '<rootDir>/libs/shared-session/scripts/write-redis-scripts.js',
  projects: [
    {
      ...common,
      displayName: 'unit',
      roots: ['<rootDir>/libs', '<rootDir>/apps', '<rootDir>/protocol', '<rootDir>/stack'],
      testMatch: ['**/*.spec.ts'],
    },
    { ...common, displayName: 'nginx', roots: ['<rootDir>/resty'], testMatch: ['**/*.spec.ts'] },
    { ...common, displayName: 'e2e', roots: ['<rootDir>/e2e'], testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'] },
    { ...common, displayName: 'reliability', roots: ['<rootDir>/reliability'], testMatch: ['**/*.spec.ts'] },
  ],
};
