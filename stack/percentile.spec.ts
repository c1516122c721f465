import { percentile } from './percentile';

describe('percentile (nearest rank)', () => {
  const hundred = Array.from({ length: 100 }, (_x, i) => 100 - i); // 100 down to 1: unsorted on purpose

  it('of 100 samples: p99 is the 99th smallest, p50 the 50th, p100 the largest', () => {
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 50)).toBe(50);
    expect(percentile(hundred, 100)).toBe(100);
    expect(percentile(hundred, 1)).toBe(1);
  });

  it('takes the value at rank ⌈p/100 · n⌉', () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2); // rank 2, not the mean of 2 and 3
    expect(percentile([1, 2, 3, 4], 51)).toBe(3); // rank ⌈2.04⌉ = 3
    expect(percentile([10, 20, 30], 99)).toBe(30); // rank ⌈2.97⌉ = 3
    const thousand = Array.from({ length: 1000 }, (_x, i) => i + 1);
    expect(percentile(thousand, 99)).toBe(990);
    expect(percentile(thousand, 99.9)).toBe(999);
  });

  it('p0 is the smallest; one sample is every percentile; none is NaN', () => {
    expect(percentile([5, 3, 9], 0)).toBe(3);
    expect(percentile([7], 1)).toBe(7);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('leaves its input as it was, and refuses a p outside 0..100', () => {
    const values = [3, 1, 2];
    percentile(values, 50);
    expect(values).toEqual([3, 1, 2]);
    expect(() => percentile(values, 101)).toThrow(RangeError);
    expect(() => percentile(values, -1)).toThrow(RangeError);
    expect(() => percentile(values, NaN)).toThrow(RangeError);
  });
});
