// What the backward pass tells a listener as it goes: which suffix of the gradient buffer is final. Data
// parallelism (comm/gradient_buckets.h) starts reducing those gradients while the rest is computed.
#pragma once
#include <cstddef>

namespace pl {

class GradientSink {
 public:
  virtual ~GradientSink() = default;
  // Every gradient at float offsets [from, end of the trainable buffer) is final: the backend has been
  // given all the work that writes them (a device backend may not have run it yet). `from` only decreases.
  virtual void ready(size_t from) = 0;
  // The whole buffer is final; returns once whatever the sink does with it is complete.
  virtual void finish() = 0;
};

}  // namespace pl
