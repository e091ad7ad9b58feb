import { describe, expect, test } from 'vitest';
import { splitBaselines } from '../../src/eval/baselines.js';

describe('splitBaselines', () => {
  test('chance is 1/C and k/C; majority is the share of the most frequent label(s)', () => {
    // 3 classes, 6 samples: 'cat' ×3, 'dog' ×2, 'car' ×1.
    const b = splitBaselines([0, 0, 0, 1, 1, 2], ['cat', 'dog', 'car']);
    expect(b.chance.top1).toBeCloseTo(1 / 3, 12);
    expect(b.chance.top5K).toBe(3);
    expect(b.chance.top5).toBe(1); // k capped at 3 classes
    expect(b.majority).toEqual({ top1: 0.5, top5: 1, class: 'cat', count: 3 });
    expect(b.chance.i2tR1).toBeUndefined();
    expect({ samples: b.samples, classes: b.classes }).toEqual({ samples: 6, classes: 3 });
  });

  test('with more than 5 classes top-5 chance is 5/C and majority top-5 sums the 5 largest classes', () => {
    // counts per class 0..6: 4, 1, 1, 1, 1, 1, 1 (10 samples)
    const labels = [0, 0, 0, 0, 1, 2, 3, 4, 5, 6];
    const b = splitBaselines(labels, ['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    expect(b.chance.top1).toBeCloseTo(1 / 7, 12);
    expect(b.chance.top5).toBeCloseTo(5 / 7, 12);
    expect(b.majority.top1).toBeCloseTo(0.4, 12);
    expect(b.majority.top5).toBeCloseTo(0.8, 12); // 4 + 1 + 1 + 1 + 1
  });

  test('a tie for the majority picks the first class in class order', () => {
    const b = splitBaselines([1, 1, 0, 0, 2], ['x', 'y', 'z']);
    expect(b.majority.class).toBe('x');
    expect(b.majority.top1).toBeCloseTo(0.4, 12);
  });

  test('chance R@1: 1/images for text→image; mean of (own captions / all captions) for image→text', () => {
    // captions 0, 1 → image 0; caption 2 → image 1; caption 3 → image 2
    const b = splitBaselines([0, 1, 1], ['a', 'b'], { textToImage: [0, 0, 1, 2], images: 3 });
    expect(b.chance.t2iR1).toBeCloseTo(1 / 3, 12);
    expect(b.chance.i2tR1).toBeCloseTo((2 / 4 + 1 / 4 + 1 / 4) / 3, 12);
  });

  test('labels outside the classes and empty inputs are errors', () => {
    expect(() => splitBaselines([0, 3], ['a', 'b'])).toThrow(/label 3 of sample 1/);
    expect(() => splitBaselines([], ['a'])).toThrow(/at least one/);
  });
});
