# Sourced by the benchmarks: the test clip they all encode, testsrc2 picture with pink-noise
# stereo at 48 kHz, as a near-lossless H.264 + AAC MP4.
#   make_clip OUT SECONDS [WIDTHxHEIGHT]   (default 1920x1080)
make_clip() {
  local out=$1 dur=$2 size=${3:-1920x1080}
  ffmpeg -hide_banner -nostdin -y -loglevel error \
    -f lavfi -i "testsrc2=size=$size:rate=30:duration=$dur" \
    -f lavfi -i "anoisesrc=color=pink:amplitude=0.3:duration=$dur:sample_rate=48000" \
    -c:v libx264 -preset ultrafast -crf 16 -pix_fmt yuv420p -c:a aac -b:a 192k -ac 2 -shortest "$out"
}
