// The meta-RL input row writer shared by fastrnn.rl's write_next_input (rl_inputs.cpp) and the
// rollout plan's native loop (rl_heads.cpp): one definition, so both write the same bits.
#pragma once

#include <stdexcept>
#include <string>

namespace fastrnn_binding {

// out (B, O + A + S): row b = [obs[b], e(action[b]), signals[0][b], ..., signals[S-1][b]], or
// [obs[b], 0, ..., 0] where reset[b]; every value is copied or is 0 or 1, so the row holds the
// bits the torch ops would write. obs (B, O) may have O = 0; signals: S <= 2 columns (B,) each.
template <typename T>
void write_input_row(long batch, long O, long A, long S, const T* obs, const long long* actions, const T* first,
                     const T* second, const unsigned char* reset, T* out) {
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

}  // namespace fastrnn_binding
