// The fused LSTM recurrence, forward and backward, templated on dtype and vector width.
//
// Included by one translation unit per instruction set (see simd.h for why it lives in a
// per-ISA namespace and includes no standard header).
//
// Layouts. Small GEMMs run on weights packed once per call so that each k step of the
// micro-kernel reads contiguous vectors:
//   pack_gates:  W (4H, K) -> [unit block u][k][gate i,f,g,o][lane]: one k step yields the
//                four gates of VL units, so the nonlinearities and the state update run on
//                the accumulators while they are still in registers (no gates round trip).
//   pack_panels: B (K, N) -> [column panel][k][up to NV*VL lanes]: plain GEMM operand.
// Batch rows are split across threads; a thread owns its rows for all T steps, so the
// recurrence needs no barrier between steps.
#include "lstm_api.h"
#include "simd.h"

namespace fastrnn_cpu {
namespace FASTRNN_ISA {

template <typename T, int Bytes, int MaxRows>
struct LstmKernels {
  using S = Simd<T, Bytes>;
  using vec = typename S::vec;
  static constexpr int VL = S::width;
  static constexpr int NVMAX = 4;            // vectors per panel of a plain GEMM operand
  static constexpr int PW = NVMAX * VL;

  static long blocks(long n) { return (n + VL - 1) / VL; }
  static long lmin(long a, long b) { return a < b ? a : b; }

  // ---------------------------------------------------------------- packing
  // Reads W in pieces of KB consecutive inputs of one row (a cache line of floats) and
  // writes each unit block's [k][gate][lane] in order. Element by element in output order,
  // the reads stride through W by K elements: 2.3 ms at H = 512 (measured), a quarter of a
  // T = 100, B = 1 forward, against 0.5 ms this way on one thread.
  static void pack_gates(const void* src, long H, long K, void* dst_) {
    constexpr long KB = 64 / long(sizeof(T));
    const T* w = static_cast<const T*>(src);
    T* dst = static_cast<T*>(dst_);
#pragma omp parallel for schedule(static) if (H * K > (1L << 18))
    for (long u = 0; u < blocks(H); ++u)
      for (long k0 = 0; k0 < K; k0 += KB) {
        const long kn = lmin(KB, K - k0);
        T* d = dst + (u * K + k0) * 4 * VL;
        for (int g = 0; g < 4; ++g)
          for (int l = 0; l < VL; ++l) {
            const long unit = u * VL + l;
            const T* row = w + (g * H + unit) * K + k0;
            for (long kk = 0; kk < kn; ++kk) d[(kk * 4 + g) * VL + l] = unit < H ? row[kk] : T(0);
          }
      }
  }

  // Logical B (K, N) taken from src stored (N, K) (src_is_nk) or (K, N), both row-major.
  static void pack_panels(const void* src_, long K, long N, int src_is_nk, void* dst_) {
    const T* src = static_cast<const T*>(src_);
    T* dst = static_cast<T*>(dst_);
    for (long n0 = 0; n0 < N; n0 += PW) {
      long width = lmin(PW, blocks(N - n0) * VL);
      for (long k = 0; k < K; ++k)
        for (long j = 0; j < width; ++j) {
          long n = n0 + j;
          *dst++ = n >= N ? T(0) : src_is_nk ? src[n * K + k] : src[k * N + n];
        }
    }
  }

  // ---------------------------------------------------------------- micro-kernel
  // acc[r][j] += sum_k a[r * lda + k] * bp[k][j]  for MR rows and NV vectors of columns.
  template <int MR, int NV>
  static FASTRNN_INLINE void gemm_tile(const T* a, long lda, const T* bp, long K, vec (&acc)[MaxRows][NVMAX]) {
    for (long k = 0; k < K; ++k) {
      vec b[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) b[j] = S::load(bp + (k * NV + j) * VL);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        vec av = S::splat(a[r * lda + k]);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[r][j] += av * b[j];
      }
    }
  }

  template <int MR>
  static FASTRNN_INLINE void gemm_tile_nv(int nv, const T* a, long lda, const T* bp, long K, vec (&acc)[MaxRows][NVMAX]) {
    switch (nv) {
      case 1: gemm_tile<MR, 1>(a, lda, bp, K, acc); break;
      case 2: gemm_tile<MR, 2>(a, lda, bp, K, acc); break;
      case 3: gemm_tile<MR, 3>(a, lda, bp, K, acc); break;
      default: gemm_tile<MR, 4>(a, lda, bp, K, acc); break;
    }
  }

  // c[r * ldc + n] = (accumulate ? c : 0) + a[r] . B[:, n] for rows where keep[r] (or all).
  template <int MR>
  static void gemm_rows(const T* a, long lda, const T* bp, long K, long N, T* c, long ldc,
                        const bool* keep, bool accumulate) {
    for (long n0 = 0, panel = 0; n0 < N; n0 += PW, ++panel) {
      int nv = int(blocks(lmin(PW, N - n0)));
      vec acc[MaxRows][NVMAX];
      for (int r = 0; r < MR; ++r)
        for (int j = 0; j < nv; ++j) {
          long n = n0 + j * VL;
          acc[r][j] = accumulate && n < N ? S::load_any(c + r * ldc + n, int(lmin(VL, N - n))) : S::zero();
        }
      gemm_tile_nv<MR>(nv, a, lda, bp + panel * K * PW, K, acc);
      for (int r = 0; r < MR; ++r) {
        if (keep && !keep[r]) continue;
        for (int j = 0; j < nv; ++j) {
          long n = n0 + j * VL;
          if (n < N) S::store_any(c + r * ldc + n, acc[r][j], int(lmin(VL, N - n)));
        }
      }
    }
  }

  // Runs fn.template operator()<MR>(row0) over row tiles of [0, rows).
  template <typename Fn>
  static FASTRNN_INLINE void for_row_tiles(long rows, Fn&& fn) {
    long r0 = 0;
    for (; r0 + MaxRows <= rows; r0 += MaxRows) fn.template operator()<MaxRows>(r0);
    switch (rows - r0) {
#define FASTRNN_TAIL(n) case n: if constexpr (n < MaxRows) fn.template operator()<n>(r0); break;
      FASTRNN_TAIL(1) FASTRNN_TAIL(2) FASTRNN_TAIL(3) FASTRNN_TAIL(4) FASTRNN_TAIL(5)
      FASTRNN_TAIL(6) FASTRNN_TAIL(7)
#undef FASTRNN_TAIL
      default: break;
    }
  }

  // ---------------------------------------------------------------- forward cell epilogue
  // Given pre-activation gates (i, f, g, o) of VL units for MR rows, update c in place
  // (rows where active[r]) and write h = o * tanh(c), the activated gates and c_t.
  template <int MR>
  static FASTRNN_INLINE void cell_epilogue(vec (&acc)[MaxRows][NVMAX], int lanes, const bool* active,
                                           T* const* c_rows, T* const* h_rows, T* const* gates_rows,
                                           T* const* cells_rows, long H) {
    for (int r = 0; r < MR; ++r) {
      if (!active[r]) continue;
      vec i = S::sigmoid(acc[r][0]), f = S::sigmoid(acc[r][1]);
      vec g = S::tanh(acc[r][2]), o = S::sigmoid(acc[r][3]);
      vec c = f * S::load_any(c_rows[r], lanes) + i * g;
      S::store_any(c_rows[r], c, lanes);
      S::store_any(h_rows[r], o * S::tanh(c), lanes);
      if (gates_rows) {
        S::store_any(gates_rows[r], i, lanes);
        S::store_any(gates_rows[r] + H, f, lanes);
        S::store_any(gates_rows[r] + 2 * H, g, lanes);
        S::store_any(gates_rows[r] + 3 * H, o, lanes);
      }
      if (cells_rows) S::store_any(cells_rows[r], c, lanes);
    }
  }

  // ---------------------------------------------------------------- one step's gates
  // What a forward step reads and writes, for the tile function below.
  struct Step {
    long t, B, H, R, G, b0;       // b0: batch index of local row 0
    const T* xproj;               // (T, B, 4H), or null: x, wi and bias instead
    const T* x;                   // (T, B, I) with the projection fused, or null
    long I;
    const T* wi;                  // W_ih packed by pack_gates
    const T* bias;                // (4H), or null
    const T* wg;                  // W_hh packed by pack_gates
    const T* hp;                  // h_{t-1}, local rows, leading dimension R
    T* h_out;                     // o * tanh(c_t), local rows, leading dimension ldo
    long ldo;
    T* c;                         // c, local rows (H), updated in place
    const bool* active;           // local rows
    T* gates_out;                 // (T, B, 4H) or null
    T* cells_out;                 // (T, B, H) or null
  };

  // Unit block u (VL units, all four gates) for local rows [r0, r0 + MR): xproj (or
  // bias + x_t W_ih^T) plus h_{t-1} W_hh, then the cell update on the accumulators while they
  // are in registers.
  template <int MR>
  static FASTRNN_INLINE void gate_tile(const Step& s, long r0, long u) {
    const long unit0 = u * VL, H = s.H;
    const int lanes = int(lmin(VL, H - unit0));
    vec acc[MaxRows][NVMAX];
    T *c_rows[MaxRows], *h_rows[MaxRows], *g_rows[MaxRows], *cell_rows[MaxRows];
    const long row0 = s.t * s.B + s.b0 + r0;
    for (int r = 0; r < MR; ++r) {
      long row = row0 + r;
      if (s.x) {
        for (int g = 0; g < 4; ++g) acc[r][g] = s.bias ? S::load_any(s.bias + g * H + unit0, lanes) : S::zero();
      } else {
        const T* xp = s.xproj + row * s.G + unit0;
        for (int g = 0; g < 4; ++g) acc[r][g] = S::load_any(xp + g * H, lanes);
      }
      c_rows[r] = s.c + (r0 + r) * H + unit0;
      h_rows[r] = s.h_out + (r0 + r) * s.ldo + unit0;
      g_rows[r] = s.gates_out ? s.gates_out + row * s.G + unit0 : nullptr;
      cell_rows[r] = s.cells_out ? s.cells_out + row * H + unit0 : nullptr;
    }
    if (s.x) gemm_tile<MR, 4>(s.x + row0 * s.I, s.I, s.wi + u * s.I * 4 * VL, s.I, acc);
    gemm_tile<MR, 4>(s.hp + r0 * s.R, s.R, s.wg + u * s.R * 4 * VL, s.R, acc);
    cell_epilogue<MR>(acc, lanes, s.active + r0, c_rows, h_rows, s.gates_out ? g_rows : nullptr,
                      s.cells_out ? cell_rows : nullptr, H);
  }

  // Unit blocks [u0, u1) outer, row tiles inner: one block's slice of W_hh stays in cache
  // across all row tiles; xproj is then read in a scattered order, so fetch the next tile's
  // lines early.
  static void gate_tiles_by_unit(const Step& s, long rows, long u0, long u1) {
    for (long u = u0; u < u1; ++u)
      for_row_tiles(rows, [&]<int MR>(long r0) {
        if (s.xproj)
          for (long r = r0 + MR; r < r0 + 2 * MR && r < rows; ++r)
            for (int g = 0; g < 4; ++g)
              __builtin_prefetch(s.xproj + (s.t * s.B + s.b0 + r) * s.G + u * VL + g * s.H, 0, 0);
        gate_tile<MR>(s, r0, u);
      });
  }

  // ---------------------------------------------------------------- sequence forward
  static void forward_rows(const ForwardArgs& a, long b0, long b1) {
    const long T_ = a.steps, B = a.batch, H = a.hidden_size, R = a.out_size, P = a.proj, G = 4 * H, rows = b1 - b0;
    const T* xproj = static_cast<const T*>(a.xproj);
    const T* x = static_cast<const T*>(a.x);
    const T* wi = static_cast<const T*>(a.w_in_gates);
    const T* bias = static_cast<const T*>(a.bias);
    const T* wg = static_cast<const T*>(a.w_gates);
    const T* wp = static_cast<const T*>(a.w_proj);
    T* y = static_cast<T*>(a.y);
    T* gates_out = static_cast<T*>(a.gates);
    T* cells_out = static_cast<T*>(a.cells);
    T* hidden_out = static_cast<T*>(a.hidden);

    // Thread-local state: h double-buffered (every unit of h_{t-1} feeds every unit of h_t),
    // c updated in place, hid = o * tanh(c) before the projection.
    T* work = new T[2 * rows * R + rows * H + (P ? rows * H : 0)];
    T* hbuf[2] = {work, work + rows * R};
    T* cbuf = work + 2 * rows * R;
    T* hid = P ? cbuf + rows * H : nullptr;
    for (long r = 0; r < rows; ++r) {
      for (long j = 0; j < R; ++j) hbuf[0][r * R + j] = static_cast<const T*>(a.h0)[(b0 + r) * R + j];
      for (long j = 0; j < H; ++j) cbuf[r * H + j] = static_cast<const T*>(a.c0)[(b0 + r) * H + j];
    }
    bool* active = new bool[rows];
    const bool weights_fit_l2 = 4 * H * (R + (x ? a.input_size : 0)) * long(sizeof(T)) <= 512 * 1024;
    int cur = 0;
    for (long t = 0; t < T_; ++t) {
      T* hp = hbuf[cur];
      T* hn = hbuf[cur ^ 1];
      for (long r = 0; r < rows; ++r) {
        long b = b0 + r;
        active[r] = !a.lengths || t < a.lengths[b];
        if (active[r] && a.resets && a.resets[t * B + b]) {
          for (long j = 0; j < R; ++j) hp[r * R + j] = T(0);
          for (long j = 0; j < H; ++j) cbuf[r * H + j] = T(0);
        }
      }
      const Step step{t, B, H, R, G, b0, xproj, x, a.input_size, wi, bias, wg, hp, P ? hid : hn, P ? H : R, cbuf,
                      active, gates_out, cells_out};
      if (weights_fit_l2) {
        // Row tiles outer: a tile's xproj rows are read front to back, which the hardware
        // prefetcher follows, while all of W_hh stays in this core's L2.
        for_row_tiles(rows, [&]<int MR>(long r0) {
          for (long u = 0; u < blocks(H); ++u) gate_tile<MR>(step, r0, u);
        });
      } else {
        gate_tiles_by_unit(step, rows, 0, blocks(H));
      }
      if (P) {
        for_row_tiles(rows, [&]<int MR>(long r0) {
          gemm_rows<MR>(hid + r0 * H, H, wp, H, P, hn + r0 * R, R, active + r0, false);
        });
      }
      for (long r = 0; r < rows; ++r) {
        long b = b0 + r;
        T* yt = y + (t * B + b) * R;
        if (active[r]) {
          for (long j = 0; j < R; ++j) yt[j] = hn[r * R + j];
          if (hidden_out)
            for (long j = 0; j < H; ++j) hidden_out[(t * B + b) * H + j] = hid[r * H + j];
        } else {
          // A finished row keeps its state and outputs zeros; its saved values are zeroed
          // so the op's outputs are deterministic.
          for (long j = 0; j < R; ++j) { hn[r * R + j] = hp[r * R + j]; yt[j] = T(0); }
          if (gates_out) for (long j = 0; j < G; ++j) gates_out[(t * B + b) * G + j] = T(0);
          if (cells_out) for (long j = 0; j < H; ++j) cells_out[(t * B + b) * H + j] = T(0);
          if (hidden_out) for (long j = 0; j < H; ++j) hidden_out[(t * B + b) * H + j] = T(0);
        }
      }
      cur ^= 1;
    }
    for (long r = 0; r < rows; ++r) {
      for (long j = 0; j < R; ++j) static_cast<T*>(a.h_n)[(b0 + r) * R + j] = hbuf[cur][r * R + j];
      for (long j = 0; j < H; ++j) static_cast<T*>(a.c_n)[(b0 + r) * H + j] = cbuf[r * H + j];
    }
    delete[] active;
    delete[] work;
  }

  // The forward without projection, each thread of an OpenMP team on a block of batch rows
  // [b0, b1) and hidden units (unit blocks [u0, u1)). Splitting units, not only rows, keeps
  // every core busy when the batch is too small to split (B = 1, 16) and halves the weights
  // each core streams per step, at the cost of one team barrier per step (every unit of
  // h_{t-1} feeds every unit of h_t). `shared` holds 3 * B * H elements of T: h
  // double-buffered and c, each element written only by the thread that owns it.
  static void forward_blocks(const ForwardArgs& a, void* shared, long b0, long b1, long u0, long u1) {
    const long T_ = a.steps, B = a.batch, H = a.hidden_size, G = 4 * H, rows = b1 - b0;
    const long j0 = lmin(H, u0 * VL), j1 = lmin(H, u1 * VL);  // this thread's units
    T* hbuf[2] = {static_cast<T*>(shared), static_cast<T*>(shared) + B * H};
    T* cbuf = hbuf[1] + B * H;
    T* y = static_cast<T*>(a.y);
    T* gates_out = static_cast<T*>(a.gates);
    T* cells_out = static_cast<T*>(a.cells);
    // A row takes its reset at step t by zeroing its state before the step (the owner of each
    // element zeroes it); the state of a finished row is left alone.
    auto resets_at = [&](long t, long b) {
      return a.resets && (!a.lengths || t < a.lengths[b]) && a.resets[t * B + b];
    };
    for (long b = b0; b < b1; ++b) {
      bool reset = resets_at(0, b);
      for (long j = j0; j < j1; ++j) {
        hbuf[0][b * H + j] = reset ? T(0) : static_cast<const T*>(a.h0)[b * H + j];
        cbuf[b * H + j] = reset ? T(0) : static_cast<const T*>(a.c0)[b * H + j];
      }
    }
    bool* active = new bool[rows > 0 ? rows : 1];
    int cur = 0;
#pragma omp barrier
    for (long t = 0; t < T_; ++t) {
      T* hp = hbuf[cur];
      T* hn = hbuf[cur ^ 1];
      for (long r = 0; r < rows; ++r) active[r] = !a.lengths || t < a.lengths[b0 + r];
      const Step step{t, B, H, H, G, b0, static_cast<const T*>(a.xproj), static_cast<const T*>(a.x), a.input_size,
                      static_cast<const T*>(a.w_in_gates), static_cast<const T*>(a.bias),
                      static_cast<const T*>(a.w_gates), hp + b0 * H, hn + b0 * H, H, cbuf + b0 * H, active, gates_out,
                      cells_out};
      gate_tiles_by_unit(step, rows, u0, u1);
      for (long b = b0; b < b1; ++b) {
        T* yt = y + (t * B + b) * H;
        if (active[b - b0]) {
          for (long j = j0; j < j1; ++j) yt[j] = hn[b * H + j];
        } else {
          for (long j = j0; j < j1; ++j) { hn[b * H + j] = hp[b * H + j]; yt[j] = T(0); }
          if (gates_out)
            for (int g = 0; g < 4; ++g)
              for (long j = j0; j < j1; ++j) gates_out[(t * B + b) * G + g * H + j] = T(0);
          if (cells_out) for (long j = j0; j < j1; ++j) cells_out[(t * B + b) * H + j] = T(0);
        }
        if (t + 1 < T_ && resets_at(t + 1, b))
          for (long j = j0; j < j1; ++j) hn[b * H + j] = cbuf[b * H + j] = T(0);
      }
      cur ^= 1;
#pragma omp barrier
    }
    for (long b = b0; b < b1; ++b)
      for (long j = j0; j < j1; ++j) {
        static_cast<T*>(a.h_n)[b * H + j] = hbuf[cur][b * H + j];
        static_cast<T*>(a.c_n)[b * H + j] = cbuf[b * H + j];
      }
    delete[] active;
  }

  // ---------------------------------------------------------------- sequence backward
  // One row's cell backward for units [j0, j1) (j0 a multiple of VL) at one step: from the
  // saved gates (i, f, g, o) and c_t, c_{t-1} (null after a reset: the forget gate saw zero),
  // the gradient dhid of o * tanh(c_t) and dc of c_t, write the gradient of the gate
  // pre-activations and turn dc into the gradient of c_{t-1} (zero unless `carries`).
  static FASTRNN_INLINE void cell_backward(const T* gt, const T* ct, const T* cp, const T* dhid, T* dc, T* dg_out,
                                           bool carries, long H, long j0, long j1) {
    const vec one = S::splat(T(1));
    for (long u0 = j0; u0 < j1; u0 += VL) {
      int lanes = int(lmin(VL, j1 - u0));
      vec i = S::load_any(gt + u0, lanes), f = S::load_any(gt + H + u0, lanes);
      vec g = S::load_any(gt + 2 * H + u0, lanes), o = S::load_any(gt + 3 * H + u0, lanes);
      vec tc = S::tanh(S::load_any(ct + u0, lanes));
      vec dhv = S::load_any(dhid + u0, lanes);
      vec dct = S::load_any(dc + u0, lanes) + dhv * o * (one - tc * tc);
      vec c_prev = cp ? S::load_any(cp + u0, lanes) : S::zero();
      S::store_any(dg_out + u0, dct * g * i * (one - i), lanes);
      S::store_any(dg_out + H + u0, dct * c_prev * f * (one - f), lanes);
      S::store_any(dg_out + 2 * H + u0, dct * i * (one - g * g), lanes);
      S::store_any(dg_out + 3 * H + u0, dhv * tc * o * (one - o), lanes);
      S::store_any(dc + u0, carries ? dct * f : S::zero(), lanes);
    }
  }

  static void backward_rows(const BackwardArgs& a, long b0, long b1) {
    const long T_ = a.steps, B = a.batch, H = a.hidden_size, R = a.out_size, P = a.proj, G = 4 * H, rows = b1 - b0;
    const T* grad_y = static_cast<const T*>(a.grad_y);
    const T* gates = static_cast<const T*>(a.gates);
    const T* cells = static_cast<const T*>(a.cells);
    const T* c0 = static_cast<const T*>(a.c0);
    const T* whh_t = static_cast<const T*>(a.w_hh_t);
    const T* whr_t = static_cast<const T*>(a.w_hr_t);
    T* dxproj = static_cast<T*>(a.dxproj);
    T* dr_out = static_cast<T*>(a.dy_total);

    // dh: gradient reaching h_t from step t+1 (and from h_n), dc likewise for c_t;
    // dout: total gradient of y_t; dhid: gradient of o*tanh(c_t) (= dout without projection).
    T* work = new T[2 * rows * R + rows * H + (P ? rows * H : 0)];
    T* dh = work;
    T* dout = work + rows * R;
    T* dc = work + 2 * rows * R;
    T* dhid = P ? dc + rows * H : dout;
    for (long r = 0; r < rows; ++r) {
      long b = b0 + r;
      for (long j = 0; j < R; ++j) dh[r * R + j] = a.grad_h_n ? static_cast<const T*>(a.grad_h_n)[b * R + j] : T(0);
      for (long j = 0; j < H; ++j) dc[r * H + j] = a.grad_c_n ? static_cast<const T*>(a.grad_c_n)[b * H + j] : T(0);
    }
    bool* active = new bool[rows];
    bool* carries = new bool[rows];  // active and no reset: gradient flows on to step t-1
    for (long t = T_ - 1; t >= 0; --t) {
      for (long r = 0; r < rows; ++r) {
        long b = b0 + r;
        active[r] = !a.lengths || t < a.lengths[b];
        carries[r] = active[r] && !(a.resets && a.resets[t * B + b]);
        if (!active[r]) {
          for (long j = 0; j < G; ++j) dxproj[(t * B + b) * G + j] = T(0);
          if (dr_out) for (long j = 0; j < R; ++j) dr_out[(t * B + b) * R + j] = T(0);
          continue;
        }
        for (long j = 0; j < R; ++j)
          dout[r * R + j] = dh[r * R + j] + (grad_y ? grad_y[(t * B + b) * R + j] : T(0));
        if (dr_out)
          for (long j = 0; j < R; ++j) dr_out[(t * B + b) * R + j] = dout[r * R + j];
      }
      if (P) {
        for_row_tiles(rows, [&]<int MR>(long r0) {
          gemm_rows<MR>(dout + r0 * R, R, whr_t, P, H, dhid + r0 * H, H, nullptr, false);
        });
      }
      for (long r = 0; r < rows; ++r) {
        if (!active[r]) continue;
        long b = b0 + r;
        const T* gt = gates + (t * B + b) * G;
        const T* ct = cells + (t * B + b) * H;
        const T* cp = !carries[r] ? nullptr : t > 0 ? cells + ((t - 1) * B + b) * H : c0 + b * H;
        T* dg_out = dxproj + (t * B + b) * G;
        cell_backward(gt, ct, cp, dhid + r * H, dc + r * H, dg_out, carries[r], H, 0, H);
      }
      for_row_tiles(rows, [&]<int MR>(long r0) {
        gemm_rows<MR>(dxproj + (t * B + b0 + r0) * G, G, whh_t, G, R, dh + r0 * R, R, carries + r0, false);
      });
      for (long r = 0; r < rows; ++r)
        if (active[r] && !carries[r])
          for (long j = 0; j < R; ++j) dh[r * R + j] = T(0);
    }
    for (long r = 0; r < rows; ++r) {
      long b = b0 + r;
      for (long j = 0; j < R; ++j) static_cast<T*>(a.dh0)[b * R + j] = dh[r * R + j];
      for (long j = 0; j < H; ++j) static_cast<T*>(a.dc0)[b * H + j] = dc[r * H + j];
    }
    delete[] carries;
    delete[] active;
    delete[] work;
  }

  // The backward without projection, each thread of an OpenMP team on a block of batch rows
  // [b0, b1) and of W_hh's column panels [p0, p1) (hidden units p0 * PW up to p1 * PW): per
  // step, the cell backward of its units, a team barrier (the next product needs every
  // unit's gate gradients), then dh of its columns, which are again its units, so the next
  // step needs no barrier before it. `shared` holds 3 * B * H elements of T (dh, dout, dc).
  static void backward_blocks(const BackwardArgs& a, void* shared, long b0, long b1, long p0, long p1) {
    const long T_ = a.steps, B = a.batch, H = a.hidden_size, G = 4 * H;
    const long j0 = lmin(H, p0 * PW), j1 = lmin(H, p1 * PW);  // this thread's units and columns
    const T* grad_y = static_cast<const T*>(a.grad_y);
    const T* gates = static_cast<const T*>(a.gates);
    const T* cells = static_cast<const T*>(a.cells);
    const T* c0 = static_cast<const T*>(a.c0);
    T* dxproj = static_cast<T*>(a.dxproj);
    T* dh = static_cast<T*>(shared);
    T* dout = dh + B * H;
    T* dc = dout + B * H;
    for (long b = b0; b < b1; ++b)
      for (long j = j0; j < j1; ++j) {
        dh[b * H + j] = a.grad_h_n ? static_cast<const T*>(a.grad_h_n)[b * H + j] : T(0);
        dc[b * H + j] = a.grad_c_n ? static_cast<const T*>(a.grad_c_n)[b * H + j] : T(0);
      }
    const long rows = b1 - b0;
    bool* carries = new bool[rows > 0 ? rows : 1];  // active and no reset: gradient flows on to step t-1
    for (long t = T_ - 1; t >= 0; --t) {
      for (long b = b0; b < b1; ++b) {
        const bool active = !a.lengths || t < a.lengths[b];
        carries[b - b0] = active && !(a.resets && a.resets[t * B + b]);
        T* dg_out = dxproj + (t * B + b) * G;
        if (!active) {  // a finished row: its gradient passes through its unchanged state
          for (int g = 0; g < 4; ++g)
            for (long j = j0; j < j1; ++j) dg_out[g * H + j] = T(0);
          continue;
        }
        for (long j = j0; j < j1; ++j)
          dout[b * H + j] = dh[b * H + j] + (grad_y ? grad_y[(t * B + b) * H + j] : T(0));
        const T* cp = !carries[b - b0] ? nullptr : t > 0 ? cells + ((t - 1) * B + b) * H : c0 + b * H;
        cell_backward(gates + (t * B + b) * G, cells + (t * B + b) * H, cp, dout + b * H, dc + b * H, dg_out,
                      carries[b - b0], H, j0, j1);
        if (!carries[b - b0])
          for (long j = j0; j < j1; ++j) dh[b * H + j] = T(0);
      }
#pragma omp barrier
      for_row_tiles(rows, [&]<int MR>(long r0) {
        gemm_rows<MR>(dxproj + (t * B + b0 + r0) * G, G, static_cast<const T*>(a.w_hh_t) + p0 * G * PW, G, j1 - j0,
                      dh + (b0 + r0) * H + j0, H, carries + r0, false);
      });
    }
    for (long b = b0; b < b1; ++b)
      for (long j = j0; j < j1; ++j) {
        static_cast<T*>(a.dh0)[b * H + j] = dh[b * H + j];
        static_cast<T*>(a.dc0)[b * H + j] = dc[b * H + j];
      }
    delete[] carries;
  }

  // ---------------------------------------------------------------- fused single step
  static void cell_rows(const CellArgs& a, long b0, long b1) {
    const long I = a.input_size, H = a.hidden_size, R = a.out_size, P = a.proj, rows = b1 - b0;
    const T* x = static_cast<const T*>(a.x) + b0 * I;
    const T* h = static_cast<const T*>(a.h) + b0 * R;
    const T* bias = static_cast<const T*>(a.bias);
    const T* c_in = static_cast<const T*>(a.c) + b0 * H;
    T* c_out = static_cast<T*>(a.c_out) + b0 * H;
    T* h_out = static_cast<T*>(a.h_out) + b0 * R;
    T* gates_out = a.gates_out ? static_cast<T*>(a.gates_out) + b0 * 4 * H : nullptr;
    const T* wih = static_cast<const T*>(a.w_ih_gates);
    const T* whh = static_cast<const T*>(a.w_hh_gates);
    T* hid = P ? new T[rows * H] : nullptr;
    bool active[MaxRows];
    for (int r = 0; r < MaxRows; ++r) active[r] = true;
    bool any_reset = false;
    for (long r = 0; r < rows; ++r) {
      bool reset = a.resets && a.resets[b0 + r];
      any_reset |= reset;
      for (long j = 0; j < H; ++j) c_out[r * H + j] = reset ? T(0) : c_in[r * H + j];
    }
    T* h_reset = nullptr;  // a copy of h with the reset rows zeroed, only when there are any
    if (any_reset) {
      h_reset = new T[rows * R];
      for (long r = 0; r < rows; ++r)
        for (long j = 0; j < R; ++j) h_reset[r * R + j] = a.resets[b0 + r] ? T(0) : h[r * R + j];
      h = h_reset;
    }
    for (long u = 0; u < blocks(H); ++u) {
      const long unit0 = u * VL;
      const int lanes = int(lmin(VL, H - unit0));
      for_row_tiles(rows, [&]<int MR>(long r0) {
        vec acc[MaxRows][NVMAX];
        T *c_rows[MaxRows], *h_rows[MaxRows], *g_rows[MaxRows];
        for (int r = 0; r < MR; ++r) {
          for (int g = 0; g < 4; ++g) acc[r][g] = bias ? S::load_any(bias + g * H + unit0, lanes) : S::zero();
          c_rows[r] = c_out + (r0 + r) * H + unit0;
          h_rows[r] = P ? hid + (r0 + r) * H + unit0 : h_out + (r0 + r) * R + unit0;
          g_rows[r] = gates_out ? gates_out + (r0 + r) * 4 * H + unit0 : nullptr;
        }
        gemm_tile<MR, 4>(x + r0 * I, I, wih + u * I * 4 * VL, I, acc);
        gemm_tile<MR, 4>(h + r0 * R, R, whh + u * R * 4 * VL, R, acc);
        cell_epilogue<MR>(acc, lanes, active, c_rows, h_rows, gates_out ? g_rows : nullptr, nullptr, H);
      });
    }
    if (P) {
      for_row_tiles(rows, [&]<int MR>(long r0) {
        gemm_rows<MR>(hid + r0 * H, H, static_cast<const T*>(a.w_proj), H, P, h_out + r0 * R, R, nullptr, false);
      });
      delete[] hid;
    }
    delete[] h_reset;
  }

  // KernelSet::rows_times_panels: gemm_rows over row tiles, accumulating into c.
  static void rows_times_panels(const void* a, long lda, const void* packed_b, long K, long N, void* c, long ldc,
                                long rows) {
    for_row_tiles(rows, [&]<int MR>(long r0) {
      gemm_rows<MR>(static_cast<const T*>(a) + r0 * lda, lda, static_cast<const T*>(packed_b), K, N,
                    static_cast<T*>(c) + r0 * ldc, ldc, nullptr, true);
    });
  }

  static KernelSet kernel_set() {
    return KernelSet{VL, PW, &pack_gates, &pack_panels, &forward_rows, &forward_blocks, &backward_rows, &backward_blocks, &cell_rows,
                     &rows_times_panels};
  }
};

}  // namespace FASTRNN_ISA
}  // namespace fastrnn_cpu
