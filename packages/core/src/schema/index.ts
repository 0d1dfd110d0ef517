export type { StandardSchemaV1 } from "./standard-schema.ts";
export { type IssueDetail, isStandardSchema, validate } from "./validate.ts";
