import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { AnyService } from "@keel/core";
import { UsageError } from "./usage.ts";

/** Whether a value looks like a Keel service definition (checked by shape: another copy of core may have made it). */
export function isServiceDefinition(value: unknown): value is AnyService {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Partial<Record<keyof AnyService, unknown>>;
  return (
    v.kind === "service" &&
    typeof v.name === "string" &&
    typeof v.key === "string" &&
    typeof v.actions === "object" &&
    v.actions !== null
  );
}

/**
 * Imports a module (path relative to `cwd`) and returns the services it defines: its `services`
 * array export if present, otherwise every export that is a service definition.
 */
export async function loadServices(modulePath: string, cwd = process.cwd()): Promise<AnyService[]> {
  const file = resolve(cwd, modulePath);
  if (!existsSync(file)) throw new UsageError(`cannot find module '${modulePath}' (${file})`);
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const list = mod["services"];
  let found: unknown[];
  if (list !== undefined) {
    if (!Array.isArray(list)) {
      throw new UsageError(`'${modulePath}': the 'services' export must be an array of services`);
    }
    const bad = list.findIndex((s) => !isServiceDefinition(s));
    if (bad !== -1) {
      throw new UsageError(`'${modulePath}': services[${bad}] is not a Keel service definition`);
    }
    found = list;
  } else {
    found = Object.values(mod).filter(isServiceDefinition);
  }
  const services = [...new Set(found)].filter(isServiceDefinition);
  if (services.length === 0) {
    throw new UsageError(
      `'${modulePath}' defines no services: export defineService(...) definitions or a 'services' array`,
    );
  }
  const keys = new Set<string>();
  for (const s of services) {
    if (keys.has(s.key))
      throw new UsageError(`'${modulePath}': service ${s.key} is exported twice`);
    keys.add(s.key);
  }
  return services;
}
