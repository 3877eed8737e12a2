/**
 * The one place (besides the bin) where tsmicro ends the process, and only when a program asks:
 * runMain(main) runs main and turns a failure into one line on stderr and an exit code, as
 * go-micro's service.Run() does — exit 2 for a bad flag, 0 after printing --help, 1 otherwise.
 */
import { FlagError, HelpRequested } from "./cmd/flags.ts";

export async function runMain(main: () => unknown): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(err.usage);
      process.exit(0);
    }
    const program = process.argv[1]?.replace(/^.*[/\\]/, "") ?? "service";
    process.stderr.write(`${program}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof FlagError ? err.exitCode : 1);
  }
}
