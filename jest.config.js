/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // test/package/ holds the consumer-project templates of tools/consumer-test.sh:
  // they import the installed package, and run only there.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/package/'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testTimeout: 60000,
};
