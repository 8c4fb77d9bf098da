#include "checks.h"

#include <atomic>
#include <cstdio>

namespace fixture {
namespace {
std::atomic<int> gFailures{0};
}

bool reportFailure(char const* what, char const* file, int line) noexcept {
  ++gFailures;
  std::fprintf(stderr, "check failed: %s (%s:%d)\n", what, file, line);
  return false;
}

int failureCount() noexcept { return gFailures.load(); }
}  // namespace fixture
