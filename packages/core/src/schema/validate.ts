import { KeelError } from "../errors/index.ts";
import type { StandardSchemaV1 } from "./standard-schema.ts";

/** One validation issue in a form that travels on the wire. */
export interface IssueDetail {
  readonly path: string;
  readonly message: string;
}

function pathOf(issue: StandardSchemaV1.Issue): string {
  if (issue.path === undefined || issue.path.length === 0) return "";
  return issue.path
    .map((seg) => (typeof seg === "object" && seg !== null ? seg.key : seg))
    .map((key) => String(key))
    .join(".");
}

/** The error for a failed validation: the first issue in the message, every issue in `details.issues`. */
export function schemaError(
  code: "INVALID_ARGUMENT" | "INTERNAL",
  what: string,
  issues: ReadonlyArray<StandardSchemaV1.Issue>,
): KeelError {
  const list: IssueDetail[] = issues.map((i) => ({ path: pathOf(i), message: i.message }));
  const first = list[0];
  const where = first === undefined ? "" : first.path === "" ? ": " : ` at ${first.path}: `;
  return new KeelError(code, `${what} is invalid${where}${first?.message ?? ""}`, {
    details: { issues: list },
  });
}

/**
 * Validates `value` against a Standard Schema. Returns the parsed value synchronously when the
 * schema is synchronous (the common case) and a promise otherwise.
 */
export function validate<S extends StandardSchemaV1>(
  schema: S,
  value: unknown,
  what: string,
  code: "INVALID_ARGUMENT" | "INTERNAL" = "INVALID_ARGUMENT",
): StandardSchemaV1.InferOutput<S> | Promise<StandardSchemaV1.InferOutput<S>> {
  const result = schema["~standard"].validate(value);
  if (result instanceof Promise) {
    return result.then((r) => {
      if (r.issues !== undefined) throw schemaError(code, what, r.issues);
      return r.value as StandardSchemaV1.InferOutput<S>;
    });
  }
  if (result.issues !== undefined) throw schemaError(code, what, result.issues);
  return result.value as StandardSchemaV1.InferOutput<S>;
}

/** True if `value` looks like a Standard Schema V1. */
export function isStandardSchema(value: unknown): value is StandardSchemaV1 {
  if (typeof value !== "object" && typeof value !== "function") return false;
  if (value === null) return false;
  const props = (value as { "~standard"?: { version?: unknown; validate?: unknown } })["~standard"];
  return props?.version === 1 && typeof props.validate === "function";
}
