export type { StandardSchemaV1 } from "./standard-schema.ts";
export { type IssueDetail, isStandardSchema, schemaError, validate } from "./validate.ts";
