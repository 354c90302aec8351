/**
 * `npm run test:guest` (issue 11): boots a real Linux guest on v86 with the
 * VT-d model. Not part of `npm test` (jest.config.js matches only *.test.ts;
 * this matches only test/guest/*.guest.ts): the first run builds the guest
 * kernel (tools/guest/build.sh, about 15 minutes), a boot takes minutes.
 * @type {import('jest').Config}
 */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test/guest'],
  testMatch: ['**/*.guest.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
  },
  moduleFileExtensions: ['ts', 'js', 'json'],
  // One boot of the guest under the IOMMU, plus (first run only) the kernel build.
  testTimeout: 40 * 60 * 1000,
  verbose: true,
};
