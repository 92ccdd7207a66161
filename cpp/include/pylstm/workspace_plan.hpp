// The one workspace planner of the backends: named buffers placed one after the other in an
// arena, each starting on an `alignment`-byte boundary. The CPU backend plans its scratch floats
// with it (64-byte alignment: cache lines and AVX-512 vectors), the CUDA backend its device
// arena (256 bytes: cudaMalloc's alignment).
//
//   WorkspacePlan plan(64);
//   const size_t xp = plan.place("xp", bytes_xp);   // offset 0
//   const size_t h = plan.place("h", bytes_h);      // align_up(bytes_xp, 64)
//   plan.total();                                   // bytes of the arena
#pragma once

#include <cstddef>
#include <vector>

namespace pylstm {

inline size_t align_bytes(size_t n, size_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

class WorkspacePlan {
 public:
  struct Buffer {
    const char* name = "";  // a string literal
    size_t offset = 0;      // bytes from the arena's start (a multiple of the alignment)
    size_t bytes = 0;       // as asked for (the next buffer starts at the aligned end)
  };

  explicit WorkspacePlan(size_t alignment) : alignment_(alignment) {}

  // Places a buffer of `bytes` after the previous ones and returns its offset in bytes.
  size_t place(const char* name, size_t bytes) {
    const size_t at = total_;
    buffers_.push_back(Buffer{name, at, bytes});
    total_ += align_bytes(bytes, alignment_);
    return at;
  }

  // Offset of `bytes` counted in elements of `elem` bytes (the alignment must be a multiple of
  // `elem`): for arenas typed as float.
  size_t place_elems(const char* name, size_t elems, size_t elem) {
    return place(name, elems * elem) / elem;
  }

  size_t alignment() const { return alignment_; }
  size_t total() const { return total_; }  // bytes; a multiple of the alignment
  const std::vector<Buffer>& buffers() const { return buffers_; }

 private:
  size_t alignment_;
  size_t total_ = 0;
  std::vector<Buffer> buffers_;
};

}  // namespace pylstm
