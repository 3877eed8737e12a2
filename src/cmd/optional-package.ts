/**
 * Plugins' optional client libraries: imported when the plugin connects, and a missing one turned
 * into one line naming the package to install. Not in cmd/plugins.ts: that imports the default
 * (http) broker, and plugin files importing it back would make an import cycle.
 */
import { fs } from "../builtins.ts";

export class MissingPackageError extends Error {
  /** The peer dependency range tsmicro is tested with, e.g. "^5.16.0". */
  readonly range: string | undefined;
  constructor(
    readonly pkg: string,
    plugin: string,
    options?: ErrorOptions,
  ) {
    const range = peerRange(pkg);
    super(`the ${plugin} plugin needs the "${pkg}" package: npm install ${range ? `${pkg}@${range}` : pkg}`, options);
    this.name = "MissingPackageError";
    this.range = range;
  }
}

/** The range of a client library in tsmicro's own peerDependencies (../../package.json from src/ and dist/ alike). */
function peerRange(pkg: string): string | undefined {
  try {
    const manifest = JSON.parse(fs.readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { peerDependencies?: Record<string, string> };
    return manifest.peerDependencies?.[pkg];
  } catch {
    return undefined;
  }
}

/** Imports a plugin's client library, turning "not installed" into one line naming the package. */
export async function importOptional<T>(pkg: string, plugin: string): Promise<T> {
  try {
    return (await import(pkg)) as T;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const missing = (code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") && (err as Error).message.includes(`'${pkg}'`);
    if (missing) throw new MissingPackageError(pkg, plugin, { cause: err });
    throw err;
  }
}
