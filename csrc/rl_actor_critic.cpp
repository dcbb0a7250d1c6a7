// fastrnn.rl's learning-pass arithmetic (fastrnn/rl/actor_critic.py): n-step discounted returns
// and the actor-critic loss with its gradient in closed form, each one pass over the unroll's
// rows. At an agent's sizes (hundreds of rows, a few actions) the same computation in torch
// ops is a few dozen calls of microseconds of dispatch each, forward and backward, for
// arithmetic that takes a few microseconds here.
//
// The Python side checks dtypes, shapes and contiguity before any call; here a row's action is
// checked against num_actions (it indexes the row).
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <tuple>

#include "binding_util.h"
#include "cpu_dispatch.h"

namespace py = pybind11;
using namespace fastrnn_cpu;

namespace fastrnn_binding {
namespace {

// G_t = r_t + gamma * (1 - done_t) * G_{t+1}, G_T = bootstrap: rewards, dones, out (T, B).
template <typename T>
void discounted_returns(long steps, long batch, const T* rewards, const unsigned char* dones, const T* bootstrap,
                        T gamma, T* out) {
  for (long b = 0; b < batch; ++b) {
    T running = bootstrap[b];
    for (long t = steps - 1; t >= 0; --t) {
      const long i = t * batch + b;
      running = rewards[i] + (dones[i] ? T(0) : gamma) * running;
      out[i] = running;
    }
  }
}

// Over N rows of head outputs (K columns: num_actions policy logits, then the value at column
// num_actions), with advantage A = G - V taken as data:
//   policy  = -sum_n w_n log pi(a_n) A_n,      entropy = sum_n w_n H(pi_n),
//   value   = 0.5 sum_n v_n (G_n - V_n)^2,     total = policy + value_coef value - entropy_coef entropy,
// w_n = policy_mask_n / max(1, count) (1 / N without a mask), v_n likewise with value_mask.
// grad (N, K) = d total / d head_out:
//   logit j: w_n (A_n (pi_j - [j = a_n]) + entropy_coef pi_j (log pi_j + H(pi_n))),
//   value:   value_coef v_n (V_n - G_n);  other columns 0.
// Sums in double. Returns (total, policy, value, entropy).
template <typename T>
std::tuple<double, double, double, double> actor_critic(long rows, long K, long num_actions, const T* head_out,
                                                        const long long* actions, const T* returns,
                                                        const unsigned char* policy_mask,
                                                        const unsigned char* value_mask, double value_coef,
                                                        double entropy_coef, T* grad) {
  long policy_count = rows, value_count = rows;
  if (policy_mask) { policy_count = 0; for (long n = 0; n < rows; ++n) policy_count += policy_mask[n] != 0; }
  if (value_mask) { value_count = 0; for (long n = 0; n < rows; ++n) value_count += value_mask[n] != 0; }
  const double policy_unit = 1.0 / double(policy_count > 0 ? policy_count : 1);
  const double value_unit = 1.0 / double(value_count > 0 ? value_count : 1);
  double policy = 0, value = 0, entropy = 0;
  for (long n = 0; n < rows; ++n) {
    const T* z = head_out + n * K;
    T* g = grad + n * K;
    const long long a = actions[n];
    if (a < 0 || a >= num_actions)
      throw std::out_of_range("actor_critic_loss: actions must be from 0 to " + std::to_string(num_actions - 1) +
                              ", got " + std::to_string(a) + " at row " + std::to_string(n));
    const double w = policy_mask ? (policy_mask[n] ? policy_unit : 0.0) : policy_unit;
    const double v = value_mask ? (value_mask[n] ? value_unit : 0.0) : value_unit;
    const double error = double(returns[n]) - double(z[num_actions]);  // G - V, the advantage
    double peak = z[0];
    for (long j = 1; j < num_actions; ++j) peak = z[j] > peak ? double(z[j]) : peak;  // a NaN still reaches the sums
    double total = 0;
    for (long j = 0; j < num_actions; ++j) total += std::exp(double(z[j]) - peak);
    const double log_total = peak + std::log(total);
    double h = 0;
    for (long j = 0; j < num_actions; ++j) {
      const double log_p = double(z[j]) - log_total;
      h -= std::exp(log_p) * log_p;
    }
    for (long j = 0; j < num_actions; ++j) {
      const double log_p = double(z[j]) - log_total, p = std::exp(log_p);
      g[j] = T(w * (error * (p - (j == a ? 1.0 : 0.0)) + entropy_coef * p * (log_p + h)));
    }
    g[num_actions] = T(value_coef * v * -error);
    for (long j = num_actions + 1; j < K; ++j) g[j] = T(0);
    policy -= w * (double(z[a]) - log_total) * error;
    entropy += w * h;
    value += 0.5 * v * error * error;
  }
  return {policy + value_coef * value - entropy_coef * entropy, policy, value, entropy};
}

}  // namespace

void bind_rl_actor_critic(py::module_& m) {
  m.def("discounted_returns", [](int dtype, long steps, long batch, const py::object& rewards,
                                 const py::object& dones, const py::object& bootstrap, double gamma,
                                 const py::object& out) {
    auto* d = ptr<const unsigned char*>(address(dones));
    if (dtype == kFloat32)
      discounted_returns<float>(steps, batch, ptr<const float*>(address(rewards)), d,
                                ptr<const float*>(address(bootstrap)), float(gamma), ptr<float*>(address(out)));
    else
      discounted_returns<double>(steps, batch, ptr<const double*>(address(rewards)), d,
                                 ptr<const double*>(address(bootstrap)), gamma, ptr<double*>(address(out)));
  }, py::arg("dtype"), py::arg("steps"), py::arg("batch"), py::arg("rewards"), py::arg("dones"),
     py::arg("bootstrap"), py::arg("gamma"), py::arg("out"));

  m.def("actor_critic", [](int dtype, long rows, long K, long num_actions, const py::object& head_out,
                           const py::object& actions, const py::object& returns, const py::object& policy_mask,
                           const py::object& value_mask, double value_coef, double entropy_coef,
                           const py::object& grad) {
    auto* a = ptr<const long long*>(address(actions));
    auto* pm = ptr<const unsigned char*>(address(policy_mask));
    auto* vm = ptr<const unsigned char*>(address(value_mask));
    if (dtype == kFloat32)
      return actor_critic<float>(rows, K, num_actions, ptr<const float*>(address(head_out)), a,
                                 ptr<const float*>(address(returns)), pm, vm, value_coef, entropy_coef,
                                 ptr<float*>(address(grad)));
    return actor_critic<double>(rows, K, num_actions, ptr<const double*>(address(head_out)), a,
                                ptr<const double*>(address(returns)), pm, vm, value_coef, entropy_coef,
                                ptr<double*>(address(grad)));
  }, py::arg("dtype"), py::arg("rows"), py::arg("K"), py::arg("num_actions"), py::arg("head_out"),
     py::arg("actions"), py::arg("returns"), py::arg("policy_mask"), py::arg("value_mask"), py::arg("value_coef"),
     py::arg("entropy_coef"), py::arg("grad"));
}

}  // namespace fastrnn_binding
