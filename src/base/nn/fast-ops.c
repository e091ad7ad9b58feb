/*
 * mclip fast ops: WebAssembly SIMD kernels that run directly on the tfjs wasm backend's heap
 * (the module imports the backend's WebAssembly.Memory; pointers are byte offsets into it).
 *
 *   dwconv_f32  depthwise 2-D convolution, NHWC, any kernel / stride / explicit padding,
 *               channel multiplier 1 or 2, optional bias (tfjs-wasm runs kernels that have no
 *               XNNPACK micro-kernel, e.g. 7×7, through a slow generic path)
 *   gelu_f32    exact (erf) GELU, y = x/2 · (1 + erf(x/√2)), in one pass (gelu_grad_f32: its derivative)
 *   qkv_split_f32   attention q/k/v split (+ q scaling) in one pass
 *   layer_norm_f32  LayerNorm over the last axis in one pass per row
 *   col_sum_f32 sums (× scale) of the rows of a matrix: Sum / Mean over leading axes, no transpose
 *   adamw_f32   one AdamW update of a parameter and its moments in one pass (the tf-op arithmetic, in order)
 *
 * Build (clang ≥ 14 with the wasm32 target and wasm-ld; Debian: apt-get install clang-14 lld-14) and
 * regenerate fast-ops-wasm.ts (the module must import its memory, define no data segments and use
 * no stack, since it runs on the backend's heap):
 *   clang-14 --target=wasm32 -O3 -msimd128 -nostdlib -fno-builtin -Wl,--no-entry -Wl,--import-memory \
 *     -Wl,--export-dynamic -Wl,--strip-all -o /tmp/fast-ops.wasm src/base/nn/fast-ops.c
 *   node -e "const b=require('fs').readFileSync('/tmp/fast-ops.wasm').toString('base64');require('fs').writeFileSync('src/base/nn/fast-ops-wasm.ts','// Generated from fast-ops.c (see its header). Do not edit.\nexport const FAST_OPS_WASM = \''+b+'\';\n')"
 */
#include <stdint.h>
#include <wasm_simd128.h>

#define EXPORT __attribute__((visibility("default")))
typedef v128_t f4;

static inline f4 ld(const float *p) { return wasm_v128_load(p); }
static inline void st(float *p, f4 v) { wasm_v128_store(p, v); }
static inline f4 mla(f4 acc, f4 a, f4 b) { return wasm_f32x4_add(acc, wasm_f32x4_mul(a, b)); }

/* Input vector for 4 output channels oc..oc+3 (oc a multiple of 4) at pixel pointer p (channel 0). */
static inline f4 ldx1(const float *p, int oc) { return wasm_v128_load(p + oc); }
static inline f4 ldx2(const float *p, int oc) {
  f4 v = wasm_v128_load64_zero(p + (oc >> 1));
  return wasm_i32x4_shuffle(v, v, 0, 0, 1, 1);
}

/*
 * One output row segment [ox0, ox1) of interior pixels (all kx taps inside the input), 4 pixels
 * at a time, 4 output channels per vector. KW is a compile-time constant in the specialisations.
 */
#define DW_INTERIOR(NAME, LDX, MUL)                                                                 \
  static int NAME(const float *x, const float *w, const float *bias, float *y, int W, int C,      \
                   int KH, int KW, int S, int padL, int ky0, int ky1, int iy0, int ox0, int ox1,   \
                   int OC) {                                                                        \
    int ox = ox0;                                                                                   \
    for (; ox + 4 <= ox1; ox += 4) {                                                                \
      float *yo = y + (int64_t)ox * OC;                                                             \
      for (int oc = 0; oc < OC; oc += 4) {                                                          \
        f4 b = bias ? ld(bias + oc) : wasm_f32x4_splat(0.f);                                        \
        f4 a0 = b, a1 = b, a2 = b, a3 = b;                                                          \
        for (int ky = ky0; ky < ky1; ky++) {                                                        \
          const float *xr = x + ((int64_t)(iy0 + ky) * W + (ox * S - padL)) * C;                    \
          const float *wr = w + (int64_t)ky * KW * OC + oc;                                         \
          for (int kx = 0; kx < KW; kx++) {                                                         \
            f4 wv = ld(wr + kx * OC);                                                               \
            const float *xp = xr + kx * C;                                                          \
            a0 = mla(a0, LDX(xp, oc), wv);                                                          \
            a1 = mla(a1, LDX(xp + S * C, oc), wv);                                                  \
            a2 = mla(a2, LDX(xp + 2 * S * C, oc), wv);                                              \
            a3 = mla(a3, LDX(xp + 3 * S * C, oc), wv);                                              \
          }                                                                                         \
        }                                                                                           \
        st(yo + oc, a0);                                                                            \
        st(yo + OC + oc, a1);                                                                       \
        st(yo + 2 * OC + oc, a2);                                                                   \
        st(yo + 3 * OC + oc, a3);                                                                   \
      }                                                                                             \
    }                                                                                               \
    return ox;                                                                                      \
  }

DW_INTERIOR(dw_int_m1, ldx1, 1)
DW_INTERIOR(dw_int_m2, ldx2, 2)

/* One output pixel (border or leftover): clamp the kx range; 4 channel vectors at a time. */
#define DW_EDGE(NAME, LDX)                                                                          \
  static void NAME(const float *x, const float *w, const float *bias, float *y, int W, int C,      \
                   int KW, int S, int padL, int ky0, int ky1, int iy0, int ox, int OC) {           \
    int ix0 = ox * S - padL;                                                                        \
    int kx0 = ix0 < 0 ? -ix0 : 0;                                                                   \
    int kx1 = W - ix0 < KW ? W - ix0 : KW;                                                          \
    float *yo = y + (int64_t)ox * OC;                                                               \
    int oc = 0;                                                                                     \
    for (; oc + 16 <= OC; oc += 16) {                                                               \
      f4 a0, a1, a2, a3;                                                                            \
      if (bias) {                                                                                   \
        a0 = ld(bias + oc); a1 = ld(bias + oc + 4); a2 = ld(bias + oc + 8); a3 = ld(bias + oc + 12);\
      } else {                                                                                      \
        a0 = a1 = a2 = a3 = wasm_f32x4_splat(0.f);                                                  \
      }                                                                                             \
      for (int ky = ky0; ky < ky1; ky++) {                                                          \
        const float *xr = x + ((int64_t)(iy0 + ky) * W + ix0) * C;                                  \
        const float *wr = w + (int64_t)ky * KW * OC + oc;                                           \
        for (int kx = kx0; kx < kx1; kx++) {                                                        \
          const float *xp = xr + kx * C;                                                            \
          const float *wp = wr + kx * OC;                                                           \
          a0 = mla(a0, LDX(xp, oc), ld(wp));                                                        \
          a1 = mla(a1, LDX(xp, oc + 4), ld(wp + 4));                                                \
          a2 = mla(a2, LDX(xp, oc + 8), ld(wp + 8));                                                \
          a3 = mla(a3, LDX(xp, oc + 12), ld(wp + 12));                                              \
        }                                                                                           \
      }                                                                                             \
      st(yo + oc, a0); st(yo + oc + 4, a1); st(yo + oc + 8, a2); st(yo + oc + 12, a3);              \
    }                                                                                               \
    for (; oc < OC; oc += 4) {                                                                      \
      f4 a0 = bias ? ld(bias + oc) : wasm_f32x4_splat(0.f);                                         \
      for (int ky = ky0; ky < ky1; ky++) {                                                          \
        const float *xr = x + ((int64_t)(iy0 + ky) * W + ix0) * C;                                  \
        const float *wr = w + (int64_t)ky * KW * OC + oc;                                           \
        for (int kx = kx0; kx < kx1; kx++) a0 = mla(a0, LDX(xr + kx * C, oc), ld(wr + kx * OC));   \
      }                                                                                             \
      st(yo + oc, a0);                                                                              \
    }                                                                                               \
  }

DW_EDGE(dw_edge_m1, ldx1)
DW_EDGE(dw_edge_m2, ldx2)

/*
 * Depthwise conv, NHWC: x [N, H, W, C], w [KH, KW, C·M] (tfjs [KH, KW, C, M] flattened), bias
 * [C·M] or 0, y [N, HO, WO, C·M]. Requires C·M % 4 == 0 and M ∈ {1, 2}. Explicit top/left padding
 * (zeros); HO/WO given by the caller (bottom/right padding implied).
 */
EXPORT void dwconv_f32(const float *x, const float *w, const float *bias, float *y, int N, int H, int W,
                       int C, int KH, int KW, int S, int padT, int padL, int HO, int WO, int M) {
  int OC = C * M;
  /* interior output columns: ox*S - padL >= 0 and ox*S - padL + KW <= W */
  int oxa = (padL + S - 1) / S;
  int oxb = W - KW + padL >= 0 ? (W - KW + padL) / S + 1 : 0;
  if (oxb > WO) oxb = WO;
  if (oxa > oxb) oxa = oxb;
  for (int n = 0; n < N; n++) {
    const float *xn = x + (int64_t)n * H * W * C;
    float *yn = y + (int64_t)n * HO * WO * OC;
    for (int oy = 0; oy < HO; oy++) {
      int iy0 = oy * S - padT;
      int ky0 = iy0 < 0 ? -iy0 : 0;
      int ky1 = H - iy0 < KH ? H - iy0 : KH;
      float *yr = yn + (int64_t)oy * WO * OC;
      if (M == 1) {
        for (int ox = 0; ox < oxa; ox++) dw_edge_m1(xn, w, bias, yr, W, C, KW, S, padL, ky0, ky1, iy0, ox, OC);
        int ox = dw_int_m1(xn, w, bias, yr, W, C, KH, KW, S, padL, ky0, ky1, iy0, oxa, oxb, OC);
        for (; ox < WO; ox++) dw_edge_m1(xn, w, bias, yr, W, C, KW, S, padL, ky0, ky1, iy0, ox, OC);
      } else {
        for (int ox = 0; ox < oxa; ox++) dw_edge_m2(xn, w, bias, yr, W, C, KW, S, padL, ky0, ky1, iy0, ox, OC);
        int ox = dw_int_m2(xn, w, bias, yr, W, C, KH, KW, S, padL, ky0, ky1, iy0, oxa, oxb, OC);
        for (; ox < WO; ox++) dw_edge_m2(xn, w, bias, yr, W, C, KW, S, padL, ky0, ky1, iy0, ox, OC);
      }
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * GELU, exact (erf) form, via erfc so that the negative tail keeps its relative accuracy:
 *   gelu(x) = x/2 · (1 + erf(x/√2)) = x/2 · erfc(a)       for x < 0,  a = |x|/√2
 *                                   = x − x/2 · erfc(a)   for x ≥ 0
 * erfc(a) = t · exp(−a² − 1.26551223 + t·P(t)), t = 1/(1 + a/2): the Chebyshev fit of Numerical
 * Recipes (erfcc), fractional error < 1.2e-7 for all a ≥ 0. exp: Cephes expf (Cody–Waite range
 * reduction, degree-5 minimax polynomial, ≈1 ulp).
 * ------------------------------------------------------------------------------------------- */

static inline f4 splat(float v) { return wasm_f32x4_splat(v); }
static inline f4 fma4(f4 a, f4 b, f4 c) { return wasm_f32x4_add(wasm_f32x4_mul(a, b), c); }

/* exp(v) for v ≤ ~0 (clamped below at −87 so that 2^n stays a normal float). n = round(v·log2 e)
 * by the 1.5·2^23 magic-number trick, whose low mantissa bits are n, shifted into the exponent. */
static inline f4 exp4(f4 v) {
  v = wasm_f32x4_pmax(v, splat(-87.0f));
  f4 j = fma4(v, splat(1.44269504088896341f), splat(12582912.0f));
  f4 n = wasm_f32x4_sub(j, splat(12582912.0f));
  f4 r = fma4(n, splat(-0.693359375f), v);
  r = fma4(n, splat(2.12194440e-4f), r);
  /* 1 + r + r²·(c0 + c1 r + c2 r² + c3 r³ + c4 r⁴ + c5 r⁵), Estrin's scheme (short dependency chains) */
  f4 r2 = wasm_f32x4_mul(r, r);
  f4 p01 = fma4(r, splat(1.6666665459e-1f), splat(5.0000001201e-1f));
  f4 p23 = fma4(r, splat(8.3334519073e-3f), splat(4.1665795894e-2f));
  f4 p45 = fma4(r, splat(1.9875691500e-4f), splat(1.3981999507e-3f));
  f4 p = fma4(fma4(p45, r2, p23), r2, p01);
  p = fma4(p, r2, wasm_f32x4_add(r, splat(1.f)));
  v128_t e = wasm_i32x4_add(wasm_i32x4_shl(j, 23), wasm_i32x4_splat(127 << 23));
  return wasm_f32x4_mul(p, e);
}

/* −1.26551223 + 1.00002368 t + … + 0.17087277 t⁹ (erfcc's exponent polynomial), Estrin's scheme. */
static inline f4 erfc_poly(f4 t) {
  f4 t2 = wasm_f32x4_mul(t, t);
  f4 t4 = wasm_f32x4_mul(t2, t2);
  f4 q0 = fma4(t, splat(1.00002368f), splat(-1.26551223f));
  f4 q1 = fma4(t, splat(0.09678418f), splat(0.37409196f));
  f4 q2 = fma4(t, splat(0.27886807f), splat(-0.18628806f));
  f4 q3 = fma4(t, splat(1.48851587f), splat(-1.13520398f));
  f4 q4 = fma4(t, splat(0.17087277f), splat(-0.82215223f));
  f4 r0 = fma4(q1, t2, q0);
  f4 r1 = fma4(q3, t2, q2);
  f4 s0 = fma4(r1, t4, r0);
  return fma4(q4, wasm_f32x4_mul(t4, t4), s0);
}

static inline f4 gelu4(f4 x) {
  /* a ≤ 9 keeps every intermediate a normal float (denormals are ~100× slower on x86); for |x| > 12.7
   * the erfc term is < 1e-36 anyway, so the clamp changes results by less than that. */
  f4 a = wasm_f32x4_pmin(wasm_f32x4_mul(wasm_f32x4_abs(x), splat(0.70710678118654752f)), splat(9.0f));
  f4 t = wasm_f32x4_div(splat(1.f), fma4(a, splat(0.5f), splat(1.f)));
  f4 p = erfc_poly(t);
  p = wasm_f32x4_sub(p, wasm_f32x4_mul(a, a));
  f4 erfc = wasm_f32x4_mul(t, exp4(p));
  /* x/2 · erfc(a); x clamped so that ±inf gives ±inf / 0 (not inf · 0 = NaN) */
  f4 xc = wasm_f32x4_pmin(wasm_f32x4_pmax(x, splat(-3.0e38f)), splat(3.0e38f));
  f4 h = wasm_f32x4_mul(wasm_f32x4_mul(xc, splat(0.5f)), erfc);
  v128_t neg = wasm_f32x4_lt(x, splat(0.f));
  return wasm_v128_bitselect(h, wasm_f32x4_sub(x, h), neg);
}

EXPORT void gelu_f32(const float *x, float *y, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    f4 a = gelu4(ld(x + i)), b = gelu4(ld(x + i + 4));
    st(y + i, a);
    st(y + i + 4, b);
  }
  for (; i + 4 <= n; i += 4) st(y + i, gelu4(ld(x + i)));
  for (; i < n; i++) y[i] = wasm_f32x4_extract_lane(gelu4(wasm_f32x4_splat(x[i])), 0);
}

/* d gelu / dx = Φ(x) + x·φ(x), Φ(x) = 1/2 · erfc(−x/√2), φ(x) = exp(−x²/2)/√(2π); dx = dy · that. */
static inline f4 gelu_grad4(f4 x, f4 dy) {
  /* a ≤ 9 keeps every intermediate a normal float (denormals are ~100× slower on x86); for |x| > 12.7
   * the erfc term is < 1e-36 anyway, so the clamp changes results by less than that. */
  f4 a = wasm_f32x4_pmin(wasm_f32x4_mul(wasm_f32x4_abs(x), splat(0.70710678118654752f)), splat(9.0f));
  f4 t = wasm_f32x4_div(splat(1.f), fma4(a, splat(0.5f), splat(1.f)));
  f4 p = erfc_poly(t);
  f4 a2 = wasm_f32x4_mul(a, a);
  f4 hc = wasm_f32x4_mul(wasm_f32x4_mul(t, exp4(wasm_f32x4_sub(p, a2))), splat(0.5f)); /* erfc(a)/2 */
  v128_t neg = wasm_f32x4_lt(x, splat(0.f));
  f4 cdf = wasm_v128_bitselect(hc, wasm_f32x4_sub(splat(1.f), hc), neg);
  f4 xc = wasm_f32x4_pmin(wasm_f32x4_pmax(x, splat(-3.0e38f)), splat(3.0e38f));
  f4 pdf = wasm_f32x4_mul(exp4(wasm_f32x4_neg(a2)), splat(0.39894228040143268f));
  return wasm_f32x4_mul(dy, fma4(xc, pdf, cdf));
}

EXPORT void gelu_grad_f32(const float *x, const float *dy, float *dx, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) st(dx + i, gelu_grad4(ld(x + i), ld(dy + i)));
  for (; i < n; i++) dx[i] = wasm_f32x4_extract_lane(gelu_grad4(wasm_f32x4_splat(x[i]), wasm_f32x4_splat(dy[i])), 0);
}

/* ---------------------------------------------------------------------------------------------
 * Attention q/k/v split: qkv [B, N, 3, H, D] → q, k, v [B, H, N, D], q multiplied by `scale`.
 * ------------------------------------------------------------------------------------------- */
EXPORT void qkv_split_f32(const float *qkv, float *q, float *k, float *v, int B, int N, int H, int D, float scale) {
  f4 sc = wasm_f32x4_splat(scale);
  for (int b = 0; b < B; b++) {
    for (int n = 0; n < N; n++) {
      const float *src = qkv + (int64_t)(b * N + n) * 3 * H * D;
      for (int h = 0; h < H; h++) {
        int64_t o = ((int64_t)(b * H + h) * N + n) * D;
        const float *sq = src + h * D, *sk = src + (H + h) * D, *sv = src + (2 * H + h) * D;
        int i = 0;
        for (; i + 4 <= D; i += 4) {
          st(q + o + i, wasm_f32x4_mul(ld(sq + i), sc));
          st(k + o + i, ld(sk + i));
          st(v + o + i, ld(sv + i));
        }
        for (; i < D; i++) {
          q[o + i] = sq[i] * scale;
          k[o + i] = sk[i];
          v[o + i] = sv[i];
        }
      }
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * LayerNorm over the last axis: x [R, C] → (x − mean) · 1/√(var + eps) · w + b (biased variance,
 * two passes, like the tf-op version). Also writes mean and rstd per row (for the gradient).
 * ------------------------------------------------------------------------------------------- */
static inline float hsum(f4 v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}

EXPORT void layer_norm_f32(const float *x, const float *w, const float *b, float *y, float *mean_out,
                           float *rstd_out, int R, int C, float eps) {
  float inv = 1.0f / (float)C;
  for (int r = 0; r < R; r++) {
    const float *xr = x + (int64_t)r * C;
    float *yr = y + (int64_t)r * C;
    f4 s0 = wasm_f32x4_splat(0.f), s1 = s0;
    int i = 0;
    for (; i + 8 <= C; i += 8) {
      s0 = wasm_f32x4_add(s0, ld(xr + i));
      s1 = wasm_f32x4_add(s1, ld(xr + i + 4));
    }
    float s = hsum(wasm_f32x4_add(s0, s1));
    for (; i < C; i++) s += xr[i];
    float mean = s * inv;
    f4 m4 = wasm_f32x4_splat(mean);
    s0 = s1 = wasm_f32x4_splat(0.f);
    i = 0;
    for (; i + 8 <= C; i += 8) {
      f4 d0 = wasm_f32x4_sub(ld(xr + i), m4), d1 = wasm_f32x4_sub(ld(xr + i + 4), m4);
      s0 = wasm_f32x4_add(s0, wasm_f32x4_mul(d0, d0));
      s1 = wasm_f32x4_add(s1, wasm_f32x4_mul(d1, d1));
    }
    float ss = hsum(wasm_f32x4_add(s0, s1));
    for (; i < C; i++) ss += (xr[i] - mean) * (xr[i] - mean);
    float rstd = 1.0f / __builtin_sqrtf(ss * inv + eps);
    if (mean_out) mean_out[r] = mean;
    if (rstd_out) rstd_out[r] = rstd;
    f4 r4 = wasm_f32x4_splat(rstd);
    i = 0;
    for (; i + 4 <= C; i += 4)
      st(yr + i, wasm_f32x4_add(wasm_f32x4_mul(wasm_f32x4_mul(wasm_f32x4_sub(ld(xr + i), m4), r4), ld(w + i)), ld(b + i)));
    for (; i < C; i++) yr[i] = (xr[i] - mean) * rstd * w[i] + b[i];
  }
}

/* ---------------------------------------------------------------------------------------------
 * Column sums: y[c] = scale · Σ_r x[r, c] for x [R, C] — Sum and Mean over leading axes (bias,
 * BatchNorm and LayerNorm-affine reductions). 8 columns at a time in registers, rows in blocks of
 * 64 whose partial sums are added to the total (blocked summation: error grows with R/64, not R).
 * ------------------------------------------------------------------------------------------- */
#define COL_BLOCK 64
EXPORT void col_sum_f32(const float *x, float *y, int R, int C, float scale) {
  f4 sc = wasm_f32x4_splat(scale), z = wasm_f32x4_splat(0.f);
  int c = 0;
  for (; c + 8 <= C; c += 8) {
    f4 t0 = z, t1 = z;
    for (int r0 = 0; r0 < R; r0 += COL_BLOCK) {
      int r1 = r0 + COL_BLOCK < R ? r0 + COL_BLOCK : R;
      f4 a0 = z, a1 = z;
      for (int r = r0; r < r1; r++) {
        const float *p = x + (int64_t)r * C + c;
        a0 = wasm_f32x4_add(a0, ld(p));
        a1 = wasm_f32x4_add(a1, ld(p + 4));
      }
      t0 = wasm_f32x4_add(t0, a0);
      t1 = wasm_f32x4_add(t1, a1);
    }
    st(y + c, wasm_f32x4_mul(t0, sc));
    st(y + c + 4, wasm_f32x4_mul(t1, sc));
  }
  for (; c < C; c++) {
    float t = 0.f;
    for (int r0 = 0; r0 < R; r0 += COL_BLOCK) {
      int r1 = r0 + COL_BLOCK < R ? r0 + COL_BLOCK : R;
      float a = 0.f;
      for (int r = r0; r < r1; r++) a += x[(int64_t)r * C + c];
      t += a;
    }
    y[c] = t * scale;
  }
}

/* ---------------------------------------------------------------------------------------------
 * AdamW (torch.optim.AdamW) for one parameter, the same float32 operations in the same order as
 * the tf-op update in adamw.ts, so both give identical bits:
 *   g' = sign·g;  m' = m·b1 + g'·c1;  v' = v·b2 + (g'·g')·c2;
 *   p' = p·decay − ((m' / bc1) / (√(v' / bc2) + eps)) · lr
 * ------------------------------------------------------------------------------------------- */
EXPORT void adamw_f32(const float *p, const float *g, const float *m, const float *v, float *po, float *mo,
                      float *vo, int n, float sign, float b1, float c1, float b2, float c2, float decay,
                      float bc1, float bc2, float eps, float lr) {
  f4 sg = wasm_f32x4_splat(sign), B1 = wasm_f32x4_splat(b1), C1 = wasm_f32x4_splat(c1);
  f4 B2 = wasm_f32x4_splat(b2), C2 = wasm_f32x4_splat(c2), DC = wasm_f32x4_splat(decay);
  f4 BC1 = wasm_f32x4_splat(bc1), BC2 = wasm_f32x4_splat(bc2), EPS = wasm_f32x4_splat(eps), LR = wasm_f32x4_splat(lr);
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    f4 gi = wasm_f32x4_mul(ld(g + i), sg);
    f4 m2 = wasm_f32x4_add(wasm_f32x4_mul(ld(m + i), B1), wasm_f32x4_mul(gi, C1));
    f4 v2 = wasm_f32x4_add(wasm_f32x4_mul(ld(v + i), B2), wasm_f32x4_mul(wasm_f32x4_mul(gi, gi), C2));
    f4 den = wasm_f32x4_add(wasm_f32x4_sqrt(wasm_f32x4_div(v2, BC2)), EPS);
    f4 upd = wasm_f32x4_mul(wasm_f32x4_div(wasm_f32x4_div(m2, BC1), den), LR);
    st(po + i, wasm_f32x4_sub(wasm_f32x4_mul(ld(p + i), DC), upd));
    st(mo + i, m2);
    st(vo + i, v2);
  }
  for (; i < n; i++) {
    float gi = g[i] * sign;
    float m2 = m[i] * b1 + gi * c1;
    float v2 = v[i] * b2 + (gi * gi) * c2;
    float den = __builtin_sqrtf(v2 / bc2) + eps;
    po[i] = p[i] * decay - ((m2 / bc1) / den) * lr;
    mo[i] = m2;
    vo[i] = v2;
  }
}
