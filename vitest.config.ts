import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration suites start brokers and child processes; two cores, so keep files serial-ish.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
