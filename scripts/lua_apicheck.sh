#!/usr/bin/env bash
# lua_apicheck.sh - builds Lua 5.4 from Debian's own source package with
# LUA_USE_APICHECK and AddressSanitizer + UBSan, for the sanitizer build of
# the test suite (test.sh), and prints the folder that holds it (lua.h,
# lauxlib.h, lualib.h, luaconf.h and liblua.a).
#
# Why: Debian's liblua5.4 is built without the API checks and without
# sanitizers, so a binding that misuses the Lua stack (a bad index, a missing
# lua_checkstack) corrupts memory inside an uninstrumented library where ASan
# cannot see it. With LUA_USE_APICHECK every lua_* call asserts its
# arguments, and the sanitizers see inside Lua too.
#
# The source is the same version and Debian patches as the installed
# liblua5.4-dev (apt-get source with a private source list: nothing in
# /etc/apt is changed). Cached in ~/.cache/bitlab by version.
source "$(dirname "$0")/common.sh"

version=$(dpkg-query -W -f='${Version}' liblua5.4-dev 2>/dev/null) ||
    die "liblua5.4-dev is not installed (run scripts/install_deps.sh)"
out="$BITLAB_CACHE/lua-apicheck-$version"
if [ -f "$out/liblua.a" ]; then
    echo "$out"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial"
echo "deb-src http://deb.debian.org/debian bookworm main" > "$work/src.list"
apt_opts=(-o "Dir::Etc::sourcelist=$work/src.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root" -qq)
say "fetching Debian's lua5.4 $version source package (for the API-checked Lua of the ASan build)"
(cd "$work" && apt-get "${apt_opts[@]}" update >/dev/null &&
    apt-get "${apt_opts[@]}" source --download-only "lua5.4=$version" >/dev/null 2>&1) ||
    die "could not download the lua5.4 source package from Debian's registry"
(cd "$work" && dpkg-source -x --no-check ./lua5.4_*.dsc src >/dev/null) ||
    die "could not unpack the lua5.4 source package"

say "building Lua $version with LUA_USE_APICHECK, ASan and UBSan"
mkdir -p "$work/obj"
srcs=()
for f in "$work"/src/src/*.c; do
    case "$(basename "$f")" in lua.c|luac.c) continue ;; esac
    srcs+=("$f")
done
for f in "${srcs[@]}"; do
    cc -c -O1 -g -fPIC -fno-omit-frame-pointer -fsanitize=address,undefined \
       -DLUA_USE_APICHECK -DLUA_USE_LINUX -DLUA_COMPAT_5_3 \
       -o "$work/obj/$(basename "${f%.c}").o" "$f" &
    [ "$(jobs -r | wc -l)" -ge "$(nproc)" ] && wait -n
done
wait
mkdir -p "$out.tmp"
ar rcs "$out.tmp/liblua.a" "$work"/obj/*.o
cp "$work"/src/src/{lua.h,luaconf.h,lualib.h,lauxlib.h,lua.hpp} "$out.tmp/"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
