/**
 * mulberry32: a small, fast, seeded 32-bit PRNG whose whole state is one uint32. One step function
 * serves the closure form (augmentation sampling, ONNX verification inputs) and the trainer's
 * checkpointed `Rng`, so all of them draw the same sequence from the same state.
 */

/** A generator of uniform values in [0, 1). */
export type Rng = () => number;

/** One mulberry32 step: the next uint32 state and the uniform value in [0, 1) it yields. */
export function mulberry32Step(state: number): [next: number, value: number] {
  const next = (state + 0x6d2b79f5) >>> 0;
  let t = next;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return [next, ((t ^ (t >>> 14)) >>> 0) / 4294967296];
}

/** A mulberry32 generator seeded with `seed` (taken as uint32). */
export function mulberry32(seed: number): Rng {
  let state = seed >>> 0;
  return () => {
    const [next, value] = mulberry32Step(state);
    state = next;
    return value;
  };
}
