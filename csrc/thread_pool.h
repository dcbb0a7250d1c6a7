// A persistent pool of worker threads for the recurrence kernels.
//
// Why not OpenMP: torch ships its own OpenMP runtime; a second one in the same process makes
// two sets of threads that spin against each other on a small machine. This pool spins only
// briefly after a job, then sleeps, so it leaves the cores to torch between our calls.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fastrnn_cpu {

class ThreadPool {
 public:
  // The process-wide pool; rebuilt lazily in a child after fork (its threads do not survive).
  static ThreadPool& instance();

  // Calls fn(i) for every i in [0, n), each on its own thread (the caller runs i = 0), and
  // returns when all calls have returned.
  void run(int n, const std::function<void(int)>& fn);

  ~ThreadPool();

 private:
  void grow(int workers);
  void worker_loop(int index, long seen);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  const std::function<void(int)>* job_ = nullptr;
  int job_size_ = 0;
  std::atomic<long> generation_{0};
  std::atomic<int> pending_{0};
  bool stopping_ = false;
};

}  // namespace fastrnn_cpu
