import { defaultConfigPath, formatProblems, type LoadedConfig, loadConfig } from "../config/load.js";
import { UsageError } from "./args.js";

/** Loads the config named by --config, $POS_AGENT_CONFIG or the default; problems are a usage error (exit 2). */
export function loadConfigOrThrow(file: string | undefined): LoadedConfig {
  const path = file ?? defaultConfigPath(process.env);
  const loaded = loadConfig(path);
  if (!loaded.ok) throw new UsageError(formatProblems(loaded.error.file, loaded.error.problems));
  return loaded.value;
}
