import subprocess, json, csv, random
random.seed(1)
srcs = ["testsrc2", "mandelbrot", "life", "smptebars", "rgbtestsrc", "testsrc"]
sizes = [(160,120),(96,160),(200,112),(128,128),(72,128),(176,144)]
fpss = [8, 12, 15, 24, 30, 6]
clips = []
for i in range(36):
    src = srcs[i % len(srcs)]; w,h = sizes[i % len(sizes)]; fps = fpss[(i//2) % len(fpss)]
    dur = [1, 2, 3, 5, 8, 12, 20][i % 7]
    name = f"clip{i:02d}"
    if i in (5, 17):   # 1-frame clips
        extra = ["-frames:v", "1"]; dur_arg = []
    else:
        extra = []; dur_arg = []
    if src == "life":
        lavf = f"life=s={w}x{h}:rate={fps}:mold=10:ratio=0.1"
    elif src == "mandelbrot":
        lavf = f"mandelbrot=s={w}x{h}:rate={fps}"
    else:
        lavf = f"{src}=s={w}x{h}:rate={fps}"
    ext = ["mp4","mkv","webm","mov"][i % 4] if i % 5 else "mp4"
    out = f"videos/{name}.{ext}"
    codec = ["-c:v","libx264","-preset","ultrafast","-pix_fmt","yuv420p"] if ext in ("mp4","mkv","mov") else ["-c:v","libvpx","-deadline","realtime","-cpu-used","8","-b:v","200k","-pix_fmt","yuv420p","-auto-alt-ref","0"]
    cmd = ["ffmpeg","-y","-loglevel","error","-f","lavfi","-i",lavf,"-t",str(dur),*extra,*codec,out]
    subprocess.run(cmd, check=True)
    clips.append((name, ext, src, dur))
json.dump(clips, open("clips.json","w"))
