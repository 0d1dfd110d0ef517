import type { MetricFamily } from "@keel/core";

/** The content type of the Prometheus text exposition format this package writes. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** A sample value as the format writes it (`+Inf`, `-Inf`, `NaN`, or the number). */
function num(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  if (Number.isNaN(value)) return "NaN";
  return String(value);
}

function labelText(labels: Readonly<Record<string, string>>, le?: number): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(labels)) parts.push(`${k}="${escapeLabel(v)}"`);
  if (le !== undefined) parts.push(`le="${num(le)}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/**
 * Writes metric families in the Prometheus text exposition format (version 0.0.4): `# HELP` and
 * `# TYPE` lines, then one line per sample; histograms as `_bucket` (cumulative, `le` label,
 * `+Inf` last), `_sum` and `_count`.
 */
export function formatExposition(families: readonly MetricFamily[]): string {
  let out = "";
  for (const f of families) {
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.series) {
      if ("value" in s) {
        out += `${f.name}${labelText(s.labels)} ${num(s.value)}\n`;
        continue;
      }
      for (const b of s.buckets) out += `${f.name}_bucket${labelText(s.labels, b.le)} ${b.count}\n`;
      out += `${f.name}_sum${labelText(s.labels)} ${num(s.sum)}\n`;
      out += `${f.name}_count${labelText(s.labels)} ${s.count}\n`;
    }
  }
  return out;
}
