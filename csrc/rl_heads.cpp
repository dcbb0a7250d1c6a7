// fastrnn.rl's native piece: one LSTM step followed by a linear readout and a greedy choice,
// over a rollout's buffers (fastrnn/rl/). The LSTM library itself (lstm_api.h,
// lstm_kernels.h) knows nothing of readouts or actions: this file runs its step (run_cell),
// then the readout on the GEMM micro-kernel it exports (KernelSet::rows_times_panels), then
// each row's argmax.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "binding_util.h"
#include "cpu_dispatch.h"
#include "rl_inputs.h"

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
    check_not_moved();
    step_at(t, address(h), address(c), reset, address(h_out), address(c_out), threads);
  }

  // The LSTM step alone on input row t <= steps (steps: the row after the last step, which a
  // bootstrap value reads; RolloutPlan.next_state), from h and c into h_out and c_out: no
  // readout, no choice, nothing saved, and row t of the resets where reset.
  void cell(long t, const py::handle& h, const py::handle& c, bool reset, const py::handle& h_out,
            const py::handle& c_out, int threads) const {
    if (t < 0 || t > steps_) throw std::out_of_range("rollout_plan: t must be from 0 to " + std::to_string(steps_));
    if (reset && rows_[4].tensor.is_none())
      throw std::invalid_argument("rollout_plan: reset=True needs the plan to have been made with resets");
    if (t == steps_) require_row_after_last();
    check_not_moved();
    CellArgs a = args_at(t, address(h), address(c), reset, address(h_out), address(c_out));
    a.gates_out = nullptr;  // nothing saved: no backward runs through this step
    run_cell(dtype_, a, threads);
  }

  // Steps 0 to steps - 1 in one call (RolloutPlan.run): step t from the state step t - 1 wrote
  // (h0, c0 first) into row t of hidden and cells, then env(t, action_rows[t]) returns (obs,
  // first signal, second signal, done), tensors or None that the Python side checked against
  // the plan's sizes, from which row t + 1 of the inputs (write_input_row) and of the resets
  // (done, or all False) are written; step t + 1 resets where that row says. Every buffer's
  // address is compared with the bound one before the first step and after each env (its
  // Python could resize one).
  // Returns whether resets row `steps` holds a True (the step after the last needs them).
  // rewards_out: None, or (steps, B) where row t receives the first signal env returned at t.
  bool run(const py::handle& h0, const py::handle& c0, bool reset, const py::handle& hidden, const py::handle& cells,
           long obs_size, long signals, const py::function& env, const py::list& action_rows,
           const py::handle& rewards_out, int threads) const {
    const Row& inputs = rows_[0];
    const Row& resets = rows_[4];
    if (resets.tensor.is_none())
      throw std::invalid_argument("rollout_plan: run needs the plan to have been made with resets");
    if (signals < 0 || signals > 2 || obs_size < 0 || long(py::len(action_rows)) != steps_ ||
        (signals == 0 && !rewards_out.is_none()))
      throw std::invalid_argument("rollout_plan: run's sizes do not match the plan");
    const CellArgs& cell = cell_;
    if (obs_size + num_actions_ + signals != cell.input_size)
      throw std::invalid_argument("rollout_plan: obs_size + num_actions + signals must be the input size");
    require_row_after_last();  // run writes row `steps` of the inputs and the resets
    const std::uintptr_t h_base = address(hidden), c_base = address(cells), r_base = address(rewards_out);
    const std::size_t r_row = std::size_t(batch_) * element_bytes_;
    const std::uintptr_t h_row = std::uintptr_t(batch_ * cell.out_size) * element_bytes_;
    const std::uintptr_t c_row = std::uintptr_t(batch_ * cell.hidden_size) * element_bytes_;
    // Python runs only in env: the buffers are checked before the first step and after each env.
    auto check = [&] {
      check_not_moved();
      if (address(hidden) != h_base || address(cells) != c_base || address(rewards_out) != r_base)
        throw std::runtime_error("rollout_plan: a buffer of the plan was moved to other memory since it was made");
    };
    check();
    for (long t = 0; t < steps_; ++t) {
      const std::uintptr_t h = t == 0 ? address(h0) : h_base + std::uintptr_t(t - 1) * h_row;
      const std::uintptr_t c = t == 0 ? address(c0) : c_base + std::uintptr_t(t - 1) * c_row;
      step_at(t, h, c, reset, h_base + std::uintptr_t(t) * h_row, c_base + std::uintptr_t(t) * c_row, threads);
      // Held until the row is written: the tensors env returned stay alive for the copy.
      const py::tuple out = env(t, action_rows[std::size_t(t)]);
      if (out.size() != 4) throw std::invalid_argument("rollout_plan: env must return (obs, first, second, done)");
      check();
      const std::uintptr_t obs = address(out[0]), first = address(out[1]), second = address(out[2]);
      const auto* done = ptr<const unsigned char*>(address(out[3]));
      auto* next_resets = ptr<unsigned char*>(at(resets, t + 1));
      const auto* actions = ptr<const long long*>(at(rows_[3], t));
      if (dtype_ == kFloat32)
        write_input_row<float>(batch_, obs_size, num_actions_, signals, ptr<const float*>(obs), actions,
                               ptr<const float*>(first), ptr<const float*>(second), done,
                               ptr<float*>(at(inputs, t + 1)));
      else
        write_input_row<double>(batch_, obs_size, num_actions_, signals, ptr<const double*>(obs), actions,
                                ptr<const double*>(first), ptr<const double*>(second), done,
                                ptr<double*>(at(inputs, t + 1)));
      // memmove: env may return the very row it fills (its own rewards_out row, the resets row).
      if (r_base) std::memmove(ptr<void*>(r_base + std::uintptr_t(t) * r_row), ptr<const void*>(first), r_row);
      reset = false;
      if (done) {
        std::memmove(next_resets, done, std::size_t(batch_));
        for (long b = 0; b < batch_ && !reset; ++b) reset = done[b] != 0;
      } else {
        std::memset(next_resets, 0, std::size_t(batch_));
      }
    }
    return reset;
  }

 private:
  struct Row { py::object tensor; std::uintptr_t base; long bytes; };

  static std::uintptr_t at(const Row& row, long t) {
    return row.base ? row.base + std::uintptr_t(t) * std::uintptr_t(row.bytes) : 0;
  }

  // Row `steps` of the inputs (and of the resets, where bound) is read or written by the step
  // after the last: both must hold steps + 1 rows.
  void require_row_after_last() const {
    for (const Row* row : {&rows_[0], &rows_[4]})
      if (!row->tensor.is_none() &&
          row->tensor.attr("numel")().cast<long>() * row->tensor.attr("element_size")().cast<long>() <
              (steps_ + 1) * row->bytes)
        throw std::invalid_argument("rollout_plan: the step after the last needs inputs and resets of steps + 1 rows");
  }

  // The cell's arguments for step t (input and resets rows t) on the state at h and c.
  CellArgs args_at(long t, std::uintptr_t h, std::uintptr_t c, bool reset, std::uintptr_t h_out,
                   std::uintptr_t c_out) const {
    CellArgs a = cell_;
    a.batch = batch_;
    a.x = ptr<const void*>(at(rows_[0], t));
    a.h = ptr<const void*>(h);
    a.c = ptr<const void*>(c);
    a.resets = reset ? ptr<const unsigned char*>(at(rows_[4], t)) : nullptr;
    a.h_out = ptr<void*>(h_out);
    a.c_out = ptr<void*>(c_out);
    return a;
  }

  void check_not_moved() const {
    for (const auto& row : rows_)
      if (address(row.tensor) != row.base)
        throw std::runtime_error("rollout_plan: a buffer of the plan was moved to other memory since it was made");
  }

  // Step t on the state at h and c into h_out and c_out: the cell, what a sequence backward
  // needs of it (where bound), the readout and the choice.
  void step_at(long t, std::uintptr_t h, std::uintptr_t c, bool reset, std::uintptr_t h_out, std::uintptr_t c_out,
               int threads) const {
    CellArgs a = args_at(t, h, c, reset, h_out, c_out);
    a.gates_out = ptr<void*>(at(rows_[5], t));
    run_cell(dtype_, a, threads);
    if (auto* applied = ptr<unsigned char*>(at(rows_[6], t))) {
      if (reset) std::memcpy(applied, a.resets, std::size_t(batch_));
      else std::memset(applied, 0, std::size_t(batch_));
    }
    if (auto* input = ptr<unsigned char*>(at(rows_[7], t)))  // the caller may rewrite its row later
      std::memcpy(input, a.x, std::size_t(batch_ * a.input_size) * element_bytes_);
    if (auto* previous = ptr<unsigned char*>(at(rows_[8], t))) {  // h_{t-1} as the step read it
      const std::size_t row_bytes = std::size_t(a.out_size) * element_bytes_;
      std::memcpy(previous, a.h, std::size_t(batch_) * row_bytes);
      if (reset)
        for (long b = 0; b < batch_; ++b)
          if (a.resets[b]) std::memset(previous + std::size_t(b) * row_bytes, 0, row_bytes);
    }
    const KernelSet& k = kernel_set(dtype_);
    auto* actions = ptr<long long*>(at(rows_[3], t));
    if (dtype_ == kFloat32)
      readout_and_choice<float>(k, batch_, a.out_size, head_size_, num_actions_, static_cast<const float*>(a.h_out),
                                packed_head_.data(), ptr<const float*>(at(rows_[1], t)),
                                ptr<float*>(at(rows_[2], t)), actions);
    else
      readout_and_choice<double>(k, batch_, a.out_size, head_size_, num_actions_,
                                 static_cast<const double*>(a.h_out), packed_head_.data(),
                                 ptr<const double*>(at(rows_[1], t)), ptr<double*>(at(rows_[2], t)), actions);
  }

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
           py::arg("c_out"), py::arg("threads"))
      .def("cell", &StepHeads::cell, py::arg("t"), py::arg("h"), py::arg("c"), py::arg("reset"), py::arg("h_out"),
           py::arg("c_out"), py::arg("threads"))
      .def("run", &StepHeads::run, py::arg("h0"), py::arg("c0"), py::arg("reset"), py::arg("hidden"), py::arg("cells"),
           py::arg("obs_size"), py::arg("signals"), py::arg("env"), py::arg("action_rows"), py::arg("rewards_out"),
           py::arg("threads"));
}

}  // namespace fastrnn_binding
