// fastrnn.rl's native piece: one LSTM step followed by a linear readout and a greedy choice,
// over a rollout's buffers (fastrnn/rl/). The LSTM library itself (lstm_api.h,
// lstm_kernels.h) knows nothing of readouts or actions: this file runs its step (run_cell),
// then the readout on the GEMM micro-kernel it exports (KernelSet::rows_times_panels), then
// each row's argmax.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "binding_util.h"
#include "cpu_dispatch.h"

namespace py = pybind11;
using namespace fastrnn_cpu;

namespace fastrnn_binding {
namespace {

// head_out = addend + h W (B rows, K outputs; W (R, K) row-major), then actions[b] = the first
// index of the largest of row b's first num_actions outputs (torch.argmax's choice, NaN
// counting as the largest).
// packed_head: W packed by pack_panels(src_is_nk=0).
template <typename T>
void readout_and_choice(const KernelSet& k, long batch, long R, long K, long num_actions, const T* h,
                        const void* packed_head, const T* addend, T* out, long long* actions) {
  for (long i = 0; i < batch * K; ++i) out[i] = addend[i];
  k.rows_times_panels(h, R, packed_head, R, K, out, K, batch);
  for (long r = 0; r < batch; ++r) {
    const T* v = out + r * K;
    long best = 0;
    for (long j = 1; j < num_actions; ++j) {
      const bool best_is_nan = v[best] != v[best], j_is_nan = v[j] != v[j];
      if (!best_is_nan && (j_is_nan || v[j] > v[best])) best = j;
    }
    actions[r] = best;
  }
}

// The step + readout + choice over a rollout's buffers (fastrnn.rl.RolloutPlan): step t reads
// row t of the inputs, head addends and (when asked) resets, and writes row t of head_out and
// actions. The buffers, the bound weights and the head are held here; the row arithmetic is
// done here, bounds-checked, on addresses read when the plan was made, and a step first checks
// that no buffer was moved to other memory since (resize_, set_).
class StepHeads {
 public:
  // rows: (inputs, head_addends, head_out, actions, resets or None, then what a sequence
  // backward needs of each step besides its new state (the caller passes rows of its saved
  // states as h_out and c_out), or None each: gates (T, B, 4H), the resets the step applied
  // (T, B) bool, the input it read (T, B, I) and the state h it read (T, B, R), zero where it
  // reset it) with each one's row stride in bytes; steps: rows available (t < steps).
  StepHeads(int dtype, py::object weights, long batch, py::object head_w, long head_size, long num_actions,
            const std::vector<std::pair<py::object, long>>& rows, long steps)
      : dtype_(dtype), weights_(std::move(weights)), head_w_(std::move(head_w)), batch_(batch),
        head_size_(head_size), num_actions_(num_actions), steps_(steps) {
    cell_ = weights_.cast<const Holding<CellArgs>&>().args;  // weights_ holds the tensors it points to
    if (rows.size() != 9) throw std::invalid_argument("StepHeads: rows must be 9 (tensor, row bytes) pairs");
    for (const auto& [tensor, row_bytes] : rows) rows_.push_back({tensor, address(tensor), row_bytes});
    // The head is packed once: the plan raises before a step if it was written since.
    const KernelSet& k = kernel_set(dtype_);
    const long R = cell_.out_size;
    packed_head_.resize(std::size_t(packed_panels_numel(dtype_, R, head_size_)) * element_bytes_);
    k.pack_panels(ptr<const void*>(address(head_w_)), R, head_size_, 0, packed_head_.data());
  }

  void step(long t, const py::handle& h, const py::handle& c, bool reset, const py::handle& h_out,
            const py::handle& c_out, int threads) const {
    if (t < 0 || t >= steps_) throw std::out_of_range("rollout_plan: t must be from 0 to " + std::to_string(steps_ - 1));
    if (reset && rows_[4].tensor.is_none())
      throw std::invalid_argument("rollout_plan: reset=True needs the plan to have been made with resets");
    for (const auto& row : rows_)
      if (address(row.tensor) != row.base)
        throw std::runtime_error("rollout_plan: a buffer of the plan was moved to other memory since it was made");
    auto at = [t](const Row& row) { return row.base ? row.base + std::uintptr_t(t) * std::uintptr_t(row.bytes) : 0; };
    CellArgs a = cell_;
    a.batch = batch_;
    a.x = ptr<const void*>(at(rows_[0]));
    a.h = ptr<const void*>(address(h));
    a.c = ptr<const void*>(address(c));
    a.resets = reset ? ptr<const unsigned char*>(at(rows_[4])) : nullptr;
    a.h_out = ptr<void*>(address(h_out));
    a.c_out = ptr<void*>(address(c_out));
    a.gates_out = ptr<void*>(at(rows_[5]));
    run_cell(dtype_, a, threads);
    if (auto* applied = ptr<unsigned char*>(at(rows_[6]))) {
      if (reset) std::memcpy(applied, a.resets, std::size_t(batch_));
      else std::memset(applied, 0, std::size_t(batch_));
    }
    if (auto* input = ptr<unsigned char*>(at(rows_[7])))  // the caller may rewrite its row later
      std::memcpy(input, a.x, std::size_t(batch_ * a.input_size) * element_bytes_);
    if (auto* previous = ptr<unsigned char*>(at(rows_[8]))) {  // h_{t-1} as the step read it
      const std::size_t row_bytes = std::size_t(a.out_size) * element_bytes_;
      std::memcpy(previous, a.h, std::size_t(batch_) * row_bytes);
      if (reset)
        for (long b = 0; b < batch_; ++b)
          if (a.resets[b]) std::memset(previous + std::size_t(b) * row_bytes, 0, row_bytes);
    }
    const KernelSet& k = kernel_set(dtype_);
    auto* actions = ptr<long long*>(at(rows_[3]));
    if (dtype_ == kFloat32)
      readout_and_choice<float>(k, batch_, a.out_size, head_size_, num_actions_, static_cast<const float*>(a.h_out),
                                packed_head_.data(), ptr<const float*>(at(rows_[1])), ptr<float*>(at(rows_[2])),
                                actions);
    else
      readout_and_choice<double>(k, batch_, a.out_size, head_size_, num_actions_, static_cast<const double*>(a.h_out),
                                 packed_head_.data(), ptr<const double*>(at(rows_[1])), ptr<double*>(at(rows_[2])),
                                 actions);
  }

 private:
  struct Row { py::object tensor; std::uintptr_t base; long bytes; };
  int dtype_;
  py::object weights_, head_w_;
  CellArgs cell_{};
  long batch_, head_size_, num_actions_, steps_;
  std::size_t element_bytes_ = dtype_ == kFloat32 ? 4 : 8;
  std::vector<unsigned char> packed_head_;
  std::vector<Row> rows_;
};

}  // namespace

void bind_rl(py::module_& m) {
  py::class_<StepHeads>(m, "StepHeads")
      .def(py::init<int, py::object, long, py::object, long, long, const std::vector<std::pair<py::object, long>>&,
                    long>(),
           py::arg("dtype"), py::arg("weights"), py::arg("batch"), py::arg("head_w"), py::arg("head_size"),
           py::arg("num_actions"), py::arg("rows"), py::arg("steps"))
      .def("step", &StepHeads::step, py::arg("t"), py::arg("h"), py::arg("c"), py::arg("reset"), py::arg("h_out"),
           py::arg("c_out"), py::arg("threads"));
}

}  // namespace fastrnn_binding
