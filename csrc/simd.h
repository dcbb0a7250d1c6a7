// Portable SIMD vectors (GCC/Clang vector extensions) and the LSTM's transcendentals.
//
// This header is included once per instruction set, by a translation unit compiled with a
// `#pragma GCC target`, inside a namespace named by FASTRNN_ISA: every function here then
// has a distinct symbol per instruction set, so the linker can never hand the generic path
// an AVX-512 copy of an inline function. For the same reason it includes no standard header
// (the intrinsics headers a TU may include define only always-inline functions).
#ifndef FASTRNN_ISA
#error "define FASTRNN_ISA (the namespace for this instruction set) before including simd.h"
#endif

namespace fastrnn_cpu {
namespace FASTRNN_ISA {

#define FASTRNN_INLINE inline __attribute__((always_inline))

template <typename T> struct IntOf;
template <> struct IntOf<float> { using type = int; };
template <> struct IntOf<double> { using type = long long; };

// A vector of `Bytes` bytes of T; unaligned loads and stores go through memcpy, which the
// compiler turns into one unaligned vector move.
template <typename T, int Bytes>
struct Simd {
  static constexpr int width = Bytes / int(sizeof(T));
  typedef T vec __attribute__((vector_size(Bytes)));
  typedef typename IntOf<T>::type int_t;
  typedef int_t ivec __attribute__((vector_size(Bytes)));

  static FASTRNN_INLINE vec load(const T* p) { vec v; __builtin_memcpy(&v, p, sizeof(vec)); return v; }
  static FASTRNN_INLINE void store(T* p, vec v) { __builtin_memcpy(p, &v, sizeof(vec)); }
  // x - 0 is exactly x for every x (even -0), so this folds to a single broadcast; the
  // obvious `vec{} + x` does not (-0 + 0 = +0) and costs an add per splat.
  static FASTRNN_INLINE vec splat(T x) { return x - vec{}; }
  static FASTRNN_INLINE vec zero() { return vec{}; }

  // Loads/stores of the first n < width lanes (the tail of a row); the rest read as zero.
  static FASTRNN_INLINE vec load_n(const T* p, int n) {
    T tmp[width] = {};
    for (int i = 0; i < n; ++i) tmp[i] = p[i];
    return load(tmp);
  }
  static FASTRNN_INLINE void store_n(T* p, vec v, int n) {
    T tmp[width];
    store(tmp, v);
    for (int i = 0; i < n; ++i) p[i] = tmp[i];
  }
  static FASTRNN_INLINE vec load_any(const T* p, int n) { return n == width ? load(p) : load_n(p, n); }
  static FASTRNN_INLINE void store_any(T* p, vec v, int n) {
    if (n == width) store(p, v); else store_n(p, v, n);
  }

  // A NaN in `a` is returned as is (every comparison with NaN is false): the clamps below
  // must pass NaN through, or a diverged input would come out as a finite made-up number.
  static FASTRNN_INLINE vec min(vec a, vec b) { return b < a ? b : a; }
  static FASTRNN_INLINE vec max(vec a, vec b) { return b > a ? b : a; }

  // exp(x) by range reduction x = n ln2 + r, |r| <= ln2/2, a polynomial for e^r and 2^n
  // built in the exponent bits. Inputs are clamped where 2^n would leave the normal range:
  // the clamped results are ~1e-38 (float) / ~1e-308 (double) or huge, which the gate
  // nonlinearities below turn into their exact limits.
  static FASTRNN_INLINE vec exp(vec x) {
    if constexpr (sizeof(T) == 4) {
      x = max(min(x, splat(88.0f)), splat(-87.0f));
      vec fx = x * splat(1.44269504088896341f);
      ivec n = __builtin_convertvector(fx + (fx >= 0 ? splat(0.5f) : splat(-0.5f)), ivec);
      vec nf = __builtin_convertvector(n, vec);
      vec r = x - nf * splat(0.693359375f) - nf * splat(-2.12194440e-4f);
      vec p = splat(1.9875691500E-4f);
      p = p * r + splat(1.3981999507E-3f);
      p = p * r + splat(8.3334519073E-3f);
      p = p * r + splat(4.1665795894E-2f);
      p = p * r + splat(1.6666665459E-1f);
      p = p * r + splat(5.0000001201E-1f);
      p = p * r * r + r + splat(1.0f);
      ivec bits = (n + 127) << 23;
      return p * (vec)bits;
    } else {
      x = max(min(x, splat(709.0)), splat(-708.0));
      vec fx = x * splat(1.4426950408889634074);
      ivec n = __builtin_convertvector(fx + (fx >= 0 ? splat(0.5) : splat(-0.5)), ivec);
      vec nf = __builtin_convertvector(n, vec);
      vec r = x - nf * splat(6.93145751953125E-1) - nf * splat(1.42860682030941723212E-6);
      // Taylor series to r^13: the first omitted term is < 4e-18 for |r| <= ln2/2.
      vec p = splat(1.0 / 6227020800.0);
      const double inv_fact[] = {1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
                                 1.0 / 362880.0,    1.0 / 40320.0,    1.0 / 5040.0,
                                 1.0 / 720.0,       1.0 / 120.0,      1.0 / 24.0,
                                 1.0 / 6.0,         1.0 / 2.0,        1.0,
                                 1.0};
      for (double c : inv_fact) p = p * r + splat(c);
      ivec bits = (n + 1023) << 52;
      return p * (vec)bits;
    }
  }

  // 1 / x. Five divisions per hidden unit and step would cost about as much as the whole
  // recurrent GEMM at small H (a vector division issues every ~5 cycles), so on x86 the
  // hardware estimate (14 or 12 bits) is refined by Newton steps to full precision instead.
  // Each step is in residual form, e = 1 - x r exactly (one FMA), then r + r e (another): its
  // last rounding lands on the nearest float, so 1 / 1 is exactly 1 and a saturated gate
  // (sigmoid of a large input, 1 / (1 + ~1e-38)) is exactly 1 with a derivative of exactly 0.
  // The form r (2 - x r) stopped one ulp short (0.99999994): saturated gates then passed a
  // derivative of 6e-8, which inputs of size 1e6 turned into a W_ih gradient 2.23 off where
  // torch's float32 one is exact (tests/test_nan_propagation.py, saturated gates).
  static FASTRNN_INLINE vec recip(vec x) {
#if defined(FASTRNN_HAVE_AVX512)
    if constexpr (Bytes == 64) {
      const vec one = splat(T(1));
      if constexpr (sizeof(T) == 4) {
        vec r = _mm512_rcp14_ps(x);
        for (int step = 0; step < 2; ++step) r = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(x, r, one), r);
        return r;  // 14 -> 28 bits, then one more for rounding
      } else {
        vec r = _mm512_rcp14_pd(x);
        for (int step = 0; step < 3; ++step) r = _mm512_fmadd_pd(r, _mm512_fnmadd_pd(x, r, one), r);
        return r;  // 14 -> 28 -> 56 bits, then rounding
      }
    }
#endif
#if defined(FASTRNN_HAVE_AVX2)
    if constexpr (Bytes == 32 && sizeof(T) == 4) {
      const vec one = splat(T(1));
      vec r = _mm256_rcp_ps(x);
      for (int step = 0; step < 2; ++step) r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(x, r, one), r);
      return r;  // 12 -> 24 bits, then rounding
    }
#endif
    return splat(T(1)) / x;
  }

  // Below -ln(max) exp(-x) overflows in torch's sigmoid, which then returns exactly 0; ours
  // clamps exp and would return a tiny positive number instead. The difference is visible: a
  // saturated forget gate times an infinite cell state is 0 * inf = NaN in torch, inf here.
  // So the limit is made exact (NaN fails the comparison and passes through).
  static FASTRNN_INLINE vec sigmoid(vec x) {
    const vec s = recip(splat(T(1)) + exp(-x));
    const T overflow = sizeof(T) == 4 ? T(-88.72283935546875) : T(-709.782712893384);
    return x < splat(overflow) ? splat(T(0)) : s;
  }

  // tanh(x) = 1 - 2 / (e^{2x} + 1): exact limits at +-inf and an absolute error of a few
  // ulps of 1 near zero, which is what the state update needs.
  static FASTRNN_INLINE vec tanh(vec x) {
    return splat(T(1)) - splat(T(2)) * recip(exp(x + x) + splat(T(1)));
  }
};

}  // namespace FASTRNN_ISA
}  // namespace fastrnn_cpu
