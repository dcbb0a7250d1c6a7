// fastrnn.rl's meta-RL input row (fastrnn/rl/inputs.py): [observation, one-hot previous action,
// previous reward or other signals], zeros after the observation in rows that start an episode,
// written in one pass. At an agent's sizes (tens of rows, a few columns) the same row built
// from torch ops (an index into the one-hot table, an unsqueeze per signal, a cat, and a
// masked fill on steps where an episode starts) is three to five calls of microseconds of
// dispatch each, once per environment step, for arithmetic that takes well under one here.
//
// The Python side checks dtypes, shapes and contiguity before the call; here a row's action is
// checked against num_actions (it indexes the row).
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "binding_util.h"
#include "cpu_dispatch.h"

namespace py = pybind11;
using namespace fastrnn_cpu;

namespace fastrnn_binding {
namespace {

// out (B, O + A + S): row b = [obs[b], e(action[b]), signals[0][b], ..., signals[S-1][b]], or
// [obs[b], 0, ..., 0] where reset[b]; every value is copied or is 0 or 1, so the row holds the
// bits the torch ops would write. obs (B, O) may have O = 0; signals: S <= 2 columns (B,) each.
template <typename T>
void write_next_input(long batch, long O, long A, long S, const T* obs, const long long* actions,
                      const T* first, const T* second, const unsigned char* reset, T* out) {
  const long width = O + A + S;
  for (long b = 0; b < batch; ++b) {
    T* row = out + b * width;
    for (long j = 0; j < O; ++j) row[j] = obs[b * O + j];
    T* tail = row + O;
    for (long j = 0; j < A + S; ++j) tail[j] = T(0);
    if (reset && reset[b]) continue;  // a new episode's first step: no previous action or signal
    const long long a = actions[b];
    if (a < 0 || a >= A)
      throw std::out_of_range("write_next_input: actions must be from 0 to " + std::to_string(A - 1) + ", got " +
                              std::to_string(a) + " at row " + std::to_string(b));
    tail[a] = T(1);
    if (S > 0) tail[A] = first[b];
    if (S > 1) tail[A + 1] = second[b];
  }
}

}  // namespace

void bind_rl_inputs(py::module_& m) {
  m.def("write_next_input", [](int dtype, long batch, long O, long A, long S, const py::object& obs,
                               const py::object& actions, const py::object& first, const py::object& second,
                               const py::object& reset, const py::object& out) {
    if (S < 0 || S > 2) throw std::invalid_argument("write_next_input: at most two signal columns");
    auto* a = ptr<const long long*>(address(actions));
    auto* r = ptr<const unsigned char*>(address(reset));
    if (dtype == kFloat32)
      write_next_input<float>(batch, O, A, S, ptr<const float*>(address(obs)), a, ptr<const float*>(address(first)),
                              ptr<const float*>(address(second)), r, ptr<float*>(address(out)));
    else
      write_next_input<double>(batch, O, A, S, ptr<const double*>(address(obs)), a,
                               ptr<const double*>(address(first)), ptr<const double*>(address(second)), r,
                               ptr<double*>(address(out)));
  }, py::arg("dtype"), py::arg("batch"), py::arg("O"), py::arg("A"), py::arg("S"), py::arg("obs"),
     py::arg("actions"), py::arg("first"), py::arg("second"), py::arg("reset"), py::arg("out"));
}

}  // namespace fastrnn_binding
