// The one typed description of the native addon's surface; nothing else sees the untyped module.

/** What a build of the addon reports about itself. */
export interface BuildInfo {
  build: 'cpu' | 'cuda';
  cudaRuntimeVersion: number | null;
  cpu: {
    simd: 'avx512' | 'avx2' | 'portable';
    avx2: boolean;
    avx512: boolean;
    avx512bf16: boolean;
    hardwareThreads: number;
  };
}

export interface CudaDevice {
  index: number;
  name: string;
  computeCapability: string;
  totalMemory: number;
  multiprocessors: number;
}

export interface CudaDeviceList {
  devices: CudaDevice[];
  /** Why the list is empty, or null when it is not. */
  reason: string | null;
}

/** Every function the addon exports. */
export interface NativeAddon {
  buildInfo(): BuildInfo;
  cudaDevices(): CudaDeviceList;
}
