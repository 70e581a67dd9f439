# ffmpeg for the image and the dev shell: the headless variant (no X11/SDL/GUI libraries)
# with NVIDIA's hardware paths on, and nothing unfree:
# - NVENC/NVDEC/CUVID go through nv-codec-headers (ffnvcodec): ffmpeg dlopens the driver's
#   libcuda/libnvidia-encode/libnvcuvid at run time, so no NVIDIA library is in the closure;
# - the CUDA filters (scale_cuda, yadif_cuda, overlay_cuda, …) are compiled to PTX by clang
#   (withCudaLLVM), not nvcc, so neither the CUDA toolkit nor --enable-nonfree is needed;
# - scale_npp (libnpp) is unfree and stays off.
# The flag names are generic.nix's in nixpkgs (pkgs/development/libraries/ffmpeg/generic.nix).
{ ffmpeg-headless }:
ffmpeg-headless.override {
  withNvcodec = true;
  withNvenc = true;
  withNvdec = true;
  withCuvid = true;
  # headless leaves --enable-cuda to the "full" variant; hwupload_cuda and the CUDA
  # hwaccel device need it.
  withCuda = true;
  withCudaLLVM = true;
  withCudaNVCC = false;
  withNpp = false;
  withUnfree = false;
}
