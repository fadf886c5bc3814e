// Test runner settings. GPU tests share one Dawn device per process and Dawn keeps a polling thread busy, so test
// files run one at a time (these machines have two cores; parallel forks would starve each other).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
