/**
 * Loaded with `--import` into the benchmark's idle processes: resolves the workspace packages'
 * TypeScript sources (`packages/<name>/src/*.ts`) to their compiled JavaScript
 * (`packages/<name>/dist/src/*.js`, from `tsc -b`), so that the process runs what a published
 * package ships and never starts Node's type stripper, whose own memory would otherwise count.
 */
import { existsSync } from "node:fs";
import { registerHooks } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const SOURCE = /^(.*\/packages\/[^/]+\/)src\/(.*)\.ts$/;

registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    if (!resolved.url.startsWith("file:")) return resolved;
    const match = SOURCE.exec(fileURLToPath(resolved.url));
    if (match === null) return resolved;
    const compiled = `${match[1]}dist/src/${match[2]}.js`;
    if (!existsSync(compiled)) throw new Error(`no compiled ${compiled}: run tsc -b first`);
    return { ...resolved, url: pathToFileURL(compiled).href, format: "module" };
  },
});
