#include "cpu_dispatch.h"

#include <cstdlib>
#include <stdexcept>

#include <omp.h>

namespace fastrnn_cpu {

namespace {

bool cpu_has(const std::string& isa) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return isa == "generic";
}

KernelTable table_for(const std::string& isa) {
#if defined(__x86_64__)
  if (isa == "avx512") return kernels_avx512();
  if (isa == "avx2") return kernels_avx2();
#endif
  return kernels_generic();
}

KernelTable& active_table() {
  static KernelTable table = [] {
    const char* forced = std::getenv("FASTRNN_CPU_ISA");
    if (forced && *forced) {
      if (!cpu_has(forced))
        throw std::invalid_argument(std::string("FASTRNN_CPU_ISA=") + forced +
                                    ": this CPU supports only " + available_isas().front() + " and below");
      return table_for(forced);
    }
    return table_for(available_isas().front());
  }();
  return table;
}

// Below this much work (multiply-adds per row of the batch, summed over a call) a second
// thread costs more to wake than it saves.
constexpr double kMinWorkPerThread = 2.0e5;

int threads_for(long rows, double work_per_row, int max_threads, int min_rows_per_thread) {
  long by_rows = rows / min_rows_per_thread;
  long by_work = long(rows * work_per_row / kMinWorkPerThread);
  long n = max_threads;
  if (by_rows < n) n = by_rows;
  if (by_work < n) n = by_work;
  return n < 1 ? 1 : int(n);
}

// Splits [0, rows) into n contiguous ranges whose sizes are multiples of `tile` where possible.
//
// The threads are OpenMP's. torch ships libgomp with the soname libgomp.so.1 and loads it
// before fastrnn._C, so this extension binds to that same runtime and its thread team: our
// kernels and torch's ops take turns on one set of threads instead of two sets spinning
// against each other on the same cores.
template <typename Fn>
void split_rows(long rows, int n, long tile, Fn&& fn) {
  if (n <= 1) {
    fn(0, rows);
    return;
  }
  long tiles = (rows + tile - 1) / tile;
#pragma omp parallel num_threads(n)
  {
    int i = omp_get_thread_num(), count = omp_get_num_threads();
    long t0 = tiles * i / count, t1 = tiles * (i + 1) / count;
    long b0 = t0 * tile, b1 = t1 * tile < rows ? t1 * tile : rows;
    if (b0 < b1) fn(b0, b1);
  }
}

constexpr long kRowTile = 6;

// Runs fn(b0, b1) over the batch rows of one layer's recurrence, on as many threads as pay.
template <typename Fn>
void over_rows(long B, long T, long H, long R, long P, int max_threads, Fn&& fn) {
  double work_per_row = double(T) * 4.0 * H * R + double(T) * P * H;
  split_rows(B, threads_for(B, work_per_row, max_threads, int(kRowTile)), kRowTile, fn);
}

// Threads of a sequence pass without projection: groups of hidden units first (each thread
// then streams only its share of W_hh every step), then groups of rows for what is left.
// `blocks`: the units in the kernel's blocks (the forward's unit blocks, the backward's
// column panels); a group gets two blocks at least.
struct Grid {
  int row_groups, unit_groups;
  int threads() const { return row_groups * unit_groups; }
};

// Below this many multiply-adds per step and thread, the per-step barrier costs more than the
// thread saves.
constexpr double kMinStepWorkPerThread = 32768;

Grid thread_grid(long B, long H, long blocks, int max_threads) {
  long n = long(double(B) * 4.0 * double(H) * double(H) / kMinStepWorkPerThread);
  n = n < max_threads ? n : max_threads;
  if (n <= 1) return {1, 1};
  long units = blocks / 2 < n ? blocks / 2 : n;
  if (units < 1) units = 1;
  long rows = n / units < B ? n / units : B;
  return {int(rows < 1 ? 1 : rows), int(units)};
}

// Runs fn(b0, b1, block0, block1) on every thread of a team laid out as `grid`. The team can
// be smaller than asked for (OpenMP limits): the grid is then rebuilt for the team's size.
// Threads past the grid take empty rows but still meet every barrier, which all of the team
// must.
template <typename Fn>
void over_grid(const Grid& grid, long B, long H, long blocks, Fn&& fn) {
#pragma omp parallel num_threads(grid.threads())
  {
    const int n = omp_get_num_threads(), i = omp_get_thread_num();
    const Grid g = n == grid.threads() ? grid : thread_grid(B, H, blocks, n);
    const long rg = i / g.unit_groups, ug = i % g.unit_groups, in = i < g.threads();
    fn(in * B * rg / g.row_groups, in * B * (rg + 1) / g.row_groups, blocks * ug / g.unit_groups,
       blocks * (ug + 1) / g.unit_groups);
  }
}

}  // namespace

std::vector<std::string> available_isas() {
  std::vector<std::string> isas;
  for (const char* isa : {"avx512", "avx2", "generic"})
    if (cpu_has(isa)) isas.push_back(isa);
  return isas;
}

std::string current_isa() { return active_table().isa; }

void set_isa(const std::string& name) {
  if (name != "avx512" && name != "avx2" && name != "generic")
    throw std::invalid_argument("isa must be one of 'avx512', 'avx2', 'generic', got '" + name + "'");
  if (!cpu_has(name)) throw std::invalid_argument("this CPU does not support the '" + name + "' kernels");
  active_table() = table_for(name);
}

const KernelSet& kernel_set(int dtype) {
  if (dtype != kFloat32 && dtype != kFloat64) throw std::invalid_argument("dtype code must be 0 (float32) or 1 (float64)");
  return dtype == kFloat32 ? active_table().f32 : active_table().f64;
}

long packed_gates_numel(int dtype, long H, long K) {
  long w = kernel_set(dtype).width;
  return (H + w - 1) / w * w * 4 * K;
}

long packed_panels_numel(int dtype, long K, long N) {
  long w = kernel_set(dtype).width;
  return (N + w - 1) / w * w * K;
}

namespace {
std::vector<unsigned char> buffer_for(int dtype, long numel) {
  return std::vector<unsigned char>(size_t(numel) * (dtype == kFloat32 ? 4 : 8));
}
}  // namespace

void run_forward(int dtype, ForwardArgs a, int max_threads) {
  const KernelSet& k = kernel_set(dtype);
  auto gates = buffer_for(dtype, packed_gates_numel(dtype, a.hidden_size, a.out_size));
  k.pack_gates(a.w_hh, a.hidden_size, a.out_size, gates.data());
  a.w_gates = gates.data();
  std::vector<unsigned char> in_gates;
  if (a.x) {
    in_gates = buffer_for(dtype, packed_gates_numel(dtype, a.hidden_size, a.input_size));
    k.pack_gates(a.w_ih, a.hidden_size, a.input_size, in_gates.data());
    a.w_in_gates = in_gates.data();
  }
  std::vector<unsigned char> proj;
  if (a.proj) {
    proj = buffer_for(dtype, packed_panels_numel(dtype, a.hidden_size, a.proj));
    k.pack_panels(a.w_hr, a.hidden_size, a.proj, 1, proj.data());
    a.w_proj = proj.data();
  }
  // Without projection, hidden units are split over threads where each gets two unit blocks
  // (thread_grid); otherwise rows only, with no barrier.
  const long unit_blocks = (a.hidden_size + k.width - 1) / k.width;
  const Grid grid = thread_grid(a.batch, a.hidden_size, unit_blocks, max_threads);
  if (a.proj == 0 && grid.unit_groups > 1) {
    auto shared = buffer_for(dtype, 3 * a.batch * a.hidden_size);
    over_grid(grid, a.batch, a.hidden_size, unit_blocks, [&](long b0, long b1, long u0, long u1) {
      k.forward_blocks(a, shared.data(), b0, b1, u0, u1);
    });
    return;
  }
  const long inputs = a.out_size + (a.x ? a.input_size : 0);  // what each step multiplies per gate row
  over_rows(a.batch, a.steps, a.hidden_size, inputs, a.proj, max_threads, [&](long b0, long b1) { k.forward_rows(a, b0, b1); });
}

void run_backward(int dtype, BackwardArgs a, int max_threads) {
  const KernelSet& k = kernel_set(dtype);
  auto hh = buffer_for(dtype, packed_panels_numel(dtype, 4 * a.hidden_size, a.out_size));
  k.pack_panels(a.w_hh, 4 * a.hidden_size, a.out_size, 0, hh.data());
  a.w_hh_t = hh.data();
  std::vector<unsigned char> hr;
  if (a.proj) {
    hr = buffer_for(dtype, packed_panels_numel(dtype, a.proj, a.hidden_size));
    k.pack_panels(a.w_hr, a.proj, a.hidden_size, 0, hr.data());
    a.w_hr_t = hr.data();
  }
  // As the forward, in W_hh's column panels (the backward's product is dgates W_hh), but only
  // for batches that give each thread fewer than two row tiles: with more rows, splitting rows
  // alone was faster (one-process A/B, 2 threads, T=100, fwd+bwd: 1.1x at H=256, B=64 and 1.5x
  // at H=256, B=256), while at B = 1 and 16 forward+backward ran 1.2x-1.6x faster with the
  // split than before it (H = 128-512).
  const long panels = (a.out_size + k.panel_width - 1) / k.panel_width;
  const Grid grid = thread_grid(a.batch, a.hidden_size, panels, max_threads);
  if (a.proj == 0 && grid.unit_groups > 1 && a.batch < 2 * kRowTile * max_threads) {
    auto shared = buffer_for(dtype, 3 * a.batch * a.hidden_size);
    over_grid(grid, a.batch, a.hidden_size, panels, [&](long b0, long b1, long p0, long p1) {
      k.backward_blocks(a, shared.data(), b0, b1, p0, p1);
    });
    return;
  }
  over_rows(a.batch, a.steps, a.hidden_size, a.out_size, a.proj, max_threads, [&](long b0, long b1) { k.backward_rows(a, b0, b1); });
}

void run_cell(int dtype, const CellArgs& a, int max_threads) {
  const KernelSet& k = kernel_set(dtype);
  double work = 4.0 * a.hidden_size * (a.input_size + a.out_size) + double(a.proj) * a.hidden_size;
  int n = threads_for(a.batch, work, max_threads, int(kRowTile));
  split_rows(a.batch, n, kRowTile, [&](long b0, long b1) { k.cell_rows(a, b0, b1); });
}

}  // namespace fastrnn_cpu
