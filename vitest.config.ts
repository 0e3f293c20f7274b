import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 600_000,
    // Suites that evaluate the full test set use both cores themselves.
    fileParallelism: false,
  },
});
