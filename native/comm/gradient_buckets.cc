// GradientBuckets: a pending range grows downwards from the buffer's end as layers finish; it is started
// as one all-reduce once it holds bucketBytes, and whatever is left goes at finish().
#include "gradient_buckets.h"

#include <algorithm>

namespace pl::comm {

GradientBuckets::GradientBuckets(Communicator& comm, float* grads, size_t count, size_t bucketBytes)
    : comm_(comm), grads_(grads), count_(count), bucketFloats_(std::max<size_t>(1, bucketBytes / sizeof(float))), end_(count) {}

void GradientBuckets::launch(size_t begin) {
  if (begin >= end_) return;
  comm_.allReduce(grads_ + begin, end_ - begin, DType::F32, ReduceOp::Sum);
  launched_.emplace_back(begin, end_);
  end_ = begin;
}

void GradientBuckets::ready(size_t from) {
  from = std::min(from, count_);
  if (end_ > from && end_ - from >= bucketFloats_) launch(from);
}

void GradientBuckets::finish() {
  launch(0);
  comm_.wait();
}

}  // namespace pl::comm
