#include "thread_pool.h"

#include <pthread.h>

namespace fastrnn_cpu {

namespace {
ThreadPool* pool = nullptr;
std::mutex pool_mutex;

// In a forked child the workers are gone: forget the old pool (it cannot be joined) and
// let the next call build a new one.
void forget_pool_in_child() { pool = nullptr; }

void cpu_relax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

constexpr int kSpinIterations = 20000;  // roughly 20-50 us before a worker sleeps
}  // namespace

ThreadPool& ThreadPool::instance() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  if (!pool) {
    static bool registered = false;
    if (!registered) {
      pthread_atfork(nullptr, nullptr, &forget_pool_in_child);
      registered = true;
    }
    pool = new ThreadPool();  // lives for the process: joining at exit races interpreter teardown
  }
  return *pool;
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::grow(int workers) {
  while (int(workers_.size()) < workers) {
    int index = int(workers_.size()) + 1;
    // The generation is read here, not in the new thread: a thread that starts late must
    // still see the job published right after this call as new.
    long seen = generation_.load(std::memory_order_acquire);
    workers_.emplace_back([this, index, seen] { worker_loop(index, seen); });
  }
}

void ThreadPool::run(int n, const std::function<void(int)>& fn) {
  if (n <= 1) {
    fn(0);
    return;
  }
  grow(n - 1);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_size_ = n;
    pending_.store(n - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  fn(0);
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < kSpinIterations) cpu_relax(); else std::this_thread::yield();
  }
}

void ThreadPool::worker_loop(int index, long seen) {
  for (;;) {
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins++ < kSpinIterations) cpu_relax();
    const std::function<void(int)>* job;
    int size;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
      if (stopping_) return;
      seen = generation_.load();
      job = job_;
      size = job_size_;
    }
    if (index < size) {
      (*job)(index);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
}

}  // namespace fastrnn_cpu
