// The contract between the dispatcher (cpu_dispatch.cpp) and the per-instruction-set kernels.
// Plain structs only: this header is shared by translation units compiled for different
// instruction sets, so it must not define any inline function.
#pragma once

namespace fastrnn_cpu {

// One layer's recurrence over T steps for batch rows [b0, b1). Shapes follow the contract
// in fastrnn/reference.py; every tensor is contiguous, row-major, of the kernel's dtype.
//
// Field names are the Python layer's (fastrnn/cpp_backend.py fills these structs by name
// through the binding); in shapes below T = steps, B = batch, H = hidden_size,
// R = out_size (proj if proj else H), P = proj, I = input_size, the kernels' local names.
struct ForwardArgs {
  long steps, batch, hidden_size, out_size, proj;  // proj = 0 without projection
  long input_size;                  // I, with x
  const void* xproj;                // (T, B, 4H), or null with x
  // The input projection fused into each step (no-grad calls): x_t W_ih^T + bias is added to
  // the gates' accumulators in registers instead of being read from xproj, which at T * B
  // * 4H elements leaves the caches (written once, read once) and costs a separate GEMM pass.
  const void* x;                    // (T, B, I) in place of xproj, or null
  const void* w_ih;                 // (4H, I) as torch stores it, with x (the dispatcher packs it)
  const void* bias;                 // (4H) b_ih + b_hh, or null
  const void* w_in_gates;           // W_ih packed by pack_gates (set by the dispatcher)
  const void* w_hh;                 // (4H, R) as torch stores it (the dispatcher packs it)
  const void* w_hr;                 // (P, H) as torch stores it, or null
  const void* w_gates;              // W_hh packed by pack_gates (set by the dispatcher)
  const void* w_proj;               // W_hr packed by pack_panels(src_is_nk=1) (set by the dispatcher)
  const void* h0;                   // (B, R)
  const void* c0;                   // (B, H)
  const unsigned char* resets;      // (T, B) bools, or null
  const long long* lengths;         // (B,), or null
  void* y;                          // (T, B, R)
  void* h_n;                        // (B, R)
  void* c_n;                        // (B, H)
  void* gates;                      // (T, B, 4H) activated gates for backward, or null
  void* cells;                      // (T, B, H) c_t for backward, or null
  void* hidden;                     // (T, B, H) o*tanh(c_t) before projection, or null
  // Rows past their length get zero gates, cells and hidden (as every backend saves them).
};

struct BackwardArgs {
  long steps, batch, hidden_size, out_size, proj;
  const void* grad_y;               // (T, B, R), or null (zero)
  const void* grad_h_n;             // (B, R), or null
  const void* grad_c_n;             // (B, H), or null
  const void* w_hh;                 // (4H, R) as torch stores it
  const void* w_hr;                 // (P, H) as torch stores it, or null
  const void* w_hh_t;               // W_hh packed by pack_panels(src_is_nk=0): dh = dgates W_hh (dispatcher)
  const void* w_hr_t;               // W_hr packed by pack_panels(src_is_nk=0): dhid = dy_total W_hr (dispatcher)
  const void* c0;                   // (B, H)
  const unsigned char* resets;
  const long long* lengths;
  const void* gates;                // saved by forward
  const void* cells;                // saved by forward
  void* dxproj;                     // (T, B, 4H) out: gradient of the gate pre-activations
  void* dh0;                        // (B, R) out
  void* dc0;                        // (B, H) out
  void* dy_total;                   // (T, B, P) out with projection: total gradient of y_t
};

// One step with the input projection fused in (a no-grad step).
struct CellArgs {
  long batch, input_size, hidden_size, out_size, proj;
  const void* x;                    // (B, I)
  const void* w_ih_gates;           // W_ih packed by pack_gates
  const void* h;                    // (B, R)
  const void* w_hh_gates;           // W_hh packed by pack_gates
  const void* bias;                 // (4H) b_ih + b_hh, or null
  const void* c;                    // (B, H)
  const void* w_proj;               // or null
  const unsigned char* resets;      // (B,) bools: these rows start from zero state, or null
  void* h_out;                      // (B, R)
  void* c_out;                      // (B, H)
  // What a sequence backward needs of this step beyond h_out and c_out (a caller that saves a
  // sequence of steps can then differentiate it without running the forward again), or null:
  void* gates_out;                  // (B, 4H) activated gates, as ForwardArgs::gates' row t
};

struct KernelSet {
  int width;                        // vector lanes; packed layouts depend on it
  int panel_width;                  // columns per panel of pack_panels' layout
  void (*pack_gates)(const void* w, long H, long K, void* dst);
  void (*pack_panels)(const void* src, long K, long N, int src_is_nk, void* dst);
  void (*forward_rows)(const ForwardArgs& a, long b0, long b1);
  // Without projection: every thread of an OpenMP team calls it on its block of rows and units.
  void (*forward_blocks)(const ForwardArgs& a, void* shared, long b0, long b1, long u0, long u1);
  void (*backward_rows)(const BackwardArgs& a, long b0, long b1);
  // Without projection: every thread of a team calls it on its rows and column panels.
  void (*backward_blocks)(const BackwardArgs& a, void* shared, long b0, long b1, long p0, long p1);
  void (*cell_rows)(const CellArgs& a, long b0, long b1);
  // c[r] += a[r] B for rows [0, rows): the GEMM micro-kernel on B (K, N) packed by
  // pack_panels(src_is_nk=0); a (rows, K) with row stride lda, c (rows, N) with row stride ldc.
  void (*rows_times_panels)(const void* a, long lda, const void* packed_b, long K, long N, void* c, long ldc,
                            long rows);
};

struct KernelTable {
  const char* isa;
  KernelSet f32;
  KernelSet f64;
};

KernelTable kernels_generic();
#if defined(__x86_64__)
KernelTable kernels_avx2();
KernelTable kernels_avx512();
#endif

}  // namespace fastrnn_cpu
