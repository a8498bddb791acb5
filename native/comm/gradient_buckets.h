// Sums the gradient buffer over a communicator in buckets of about bucketBytes, each started as soon as
// the backward pass has finished it (from the buffer's end, where the last layers' gradients are), so
// that communication overlaps the rest of the backward pass. Bucket bounds depend only on the model and
// the bucket size, so every rank reduces the same ranges and a run reduces the same way each step.
#pragma once
#include <cstddef>
#include <vector>

#include "../model/gradient_sink.h"
#include "communicator.h"

namespace pl::comm {

class GradientBuckets final : public GradientSink {
 public:
  // grads: `count` floats in the communicator's memory space. The model calls ready() at layer starts
  // only, so a bucket never splits a layer.
  GradientBuckets(Communicator& comm, float* grads, size_t count, size_t bucketBytes);
  void ready(size_t from) override;
  void finish() override;
  // The buckets reduced so far, as [begin, end) float ranges in launch order.
  const std::vector<std::pair<size_t, size_t>>& launched() const { return launched_; }

 private:
  void launch(size_t begin);
  Communicator& comm_;
  float* grads_;
  size_t count_;
  size_t bucketFloats_;
  size_t end_;  // [end_, count_) is reduced or in flight
  std::vector<std::pair<size_t, size_t>> launched_;
};

}  // namespace pl::comm
