/**
 * The `p`th percentile of `values` by the nearest-rank method: sorted
 * ascending, the value at rank ⌈p/100 · n⌉ (1-based; rank 1 at the least).
 * So, of 100 samples, p50 is the 50th smallest and p99 the 99th smallest, not
 * the largest; p100 is the largest. Always one of the samples, never an
 * interpolation. NaN when there are none. `values` is not changed.
 */
export function percentile(values: readonly number[], p: number): number {
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile: p must be within 0..100, not ${p}`);
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  // p · n / 100 in that order is exact for whole p and n (0.99 · 100 is not);
  // the epsilon keeps a rank that is whole on paper from rounding up.
  const rank = Math.max(1, Math.ceil((p * sorted.length) / 100 - 1e-9));
  return sorted[rank - 1];
}
