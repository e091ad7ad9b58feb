/**
 * What accuracy means on this split without a model: chance (a uniform random guess) and the
 * majority class (always answering the most frequent label of the evaluated samples). Printed
 * beside the models in the table and stored in the JSON report, so "33 % top-1" can be read
 * against 1/3 classes or a split that is 60 % one class.
 */

export interface SplitBaselines {
  /** Expected accuracy of a uniform random guess (fractions in [0, 1]). */
  chance: {
    /** 1 / classes. */
    top1: number;
    /** k / classes, k = min(5, classes) (the k zero-shot top-5 uses). */
    top5: number;
    top5K: number;
    /** Expected image→text R@1 of a random ranking: mean over images of (its captions / all captions); absent without retrieval data. */
    i2tR1?: number;
    /** Expected text→image R@1 of a random ranking: 1 / images; absent without retrieval data. */
    t2iR1?: number;
  };
  /** Always answering the most frequent class(es) of the evaluated samples. */
  majority: {
    /** Share of the most frequent label. */
    top1: number;
    /** Share of the k most frequent labels (k = min(5, classes)). */
    top5: number;
    /** The most frequent label (the first in class order on a tie). */
    class: string;
    /** How many samples carry it. */
    count: number;
  };
  samples: number;
  classes: number;
}

export interface RetrievalLayout {
  /** Caption i belongs to image textToImage[i]. */
  textToImage: ArrayLike<number>;
  images: number;
}

/** Chance and majority-class accuracy of `labels` (indices into `classNames`), and the chance R@1 of a retrieval layout. */
export function splitBaselines(labels: ArrayLike<number>, classNames: readonly string[], retrieval?: RetrievalLayout): SplitBaselines {
  const c = classNames.length;
  const n = labels.length;
  if (c === 0 || n === 0) throw new Error('baselines need at least one class and one sample');
  const counts = new Array<number>(c).fill(0);
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= c) throw new Error(`label ${y} of sample ${i} is outside [0, ${c})`);
    counts[y]++;
  }
  const k = Math.min(5, c);
  const order = counts.map((count, i) => ({ count, i })).sort((a, b) => b.count - a.count || a.i - b.i);
  const topK = order.slice(0, k).reduce((s, e) => s + e.count, 0);
  const out: SplitBaselines = {
    chance: { top1: 1 / c, top5: k / c, top5K: k },
    majority: { top1: order[0].count / n, top5: topK / n, class: classNames[order[0].i], count: order[0].count },
    samples: n,
    classes: c,
  };
  if (retrieval && retrieval.images > 0 && retrieval.textToImage.length > 0) {
    const perImage = new Array<number>(retrieval.images).fill(0);
    for (let i = 0; i < retrieval.textToImage.length; i++) perImage[retrieval.textToImage[i]]++;
    const withCaptions = perImage.filter((m) => m > 0);
    const nT = retrieval.textToImage.length;
    // i2t R@1 is averaged over images that have captions (as retrievalMetrics does).
    out.chance.i2tR1 = withCaptions.reduce((s, m) => s + m / nT, 0) / withCaptions.length;
    out.chance.t2iR1 = 1 / retrieval.images;
  }
  return out;
}
