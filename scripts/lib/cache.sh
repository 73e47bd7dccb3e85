# Sourced by the build scripts: msb_cache_root prints msb's cache directory,
# the same one the Go code uses (guestkernel.CacheDir): $MSB_CACHE, else
# $XDG_CACHE_HOME/msb, else ~/.cache/msb. WHO names the caller in the error.
msb_cache_root() {
  local who=$1
  if [ -n "${MSB_CACHE:-}" ]; then
    printf '%s\n' "$MSB_CACHE"
  elif [ -n "${XDG_CACHE_HOME:-}" ]; then
    printf '%s\n' "$XDG_CACHE_HOME/msb"
  elif [ -n "${HOME:-}" ]; then
    printf '%s\n' "$HOME/.cache/msb"
  else
    echo "$who: no HOME: set MSB_CACHE to a private directory" >&2
    return 1
  fi
}
