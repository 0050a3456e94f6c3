import json, csv
clips = json.load(open("clips.json"))
caps = [
 "a dog",
 "Un perro corre por el parque mientras el sol se pone detrás de las montañas lejanas",
 "🐶🐶 running!!! 🎉",
 "In this rather long and meandering shot, which seems to have been filmed on a slow afternoon, colourful bars slide past the camera while nothing much else happens, and the viewer is left wondering, quite reasonably, what the point of all of this could possibly be",
 "一只猫在沙发上睡觉",
 "Кошка прыгает через забор",
 "zoom into a fractal, very trippy 🌀",
 "cells being born and dying on a grid",
 "test pattern",
 "ok",
 "Ein Mann fährt Fahrrad, \"schnell\", und winkt – danach regnet es.",
 "colour bars; then static; then colour bars again…",
]
train = clips[:24]; test = clips[24:]
with open("train.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["videoid","contentUrl","duration","page_dir","name"])
    for i,(n,ext,src,d) in enumerate(train):
        w.writerow([n, f"https://example.com/{n}.{ext}", f"PT00H00M{d:02d}S", "000001_000050", caps[i % len(caps)] + f" ({src})" * (i % 2)])
with open("test.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["key","vid_key","video_id","sentence"])
    for i,(n,ext,src,d) in enumerate(test):
        w.writerow([f"ret{i}", f"msr{i}", n, caps[(i*5) % len(caps)] + " " + src])
answers = ["Red", "red.", "a dog", "two", "2", "Rouge", "🐶", "New York", "the dog", "Yes", "yes", "bars"]
def qa(clipset, off):
    out=[]; q=0
    for i,(n,ext,src,d) in enumerate(clipset):
        for j in range(2):
            out.append({"question": ["what colour is it?", "¿qué animal es?", "how many things are there"][ (i+j)%3], "answer": answers[(i+j+off) % len(answers)], "video_id": n, "id": q}); q+=1
    return out
json.dump(qa(train,0), open("qa_train.json","w"), ensure_ascii=False)
json.dump(qa(test,3), open("qa_test.json","w"), ensure_ascii=False)
def mc(clipset):
    out=[]
    for i,(n,ext,src,d) in enumerate(clipset):
        opts = ["moves left","spins 🌀","zooms in", "stays still", "fades out"]
        out.append({"gif_name": n, "question": "what does the pattern do?", "options": opts, "answer": i % 5, "key": i})
    return out
json.dump(mc(train), open("mc_train.json","w"), ensure_ascii=False)
json.dump(mc(test), open("mc_test.json","w"), ensure_ascii=False)
# MSR-VTT JSON with splits
videos = [{"video_id": n, "split": "train" if k < 24 else "test"} for k,(n,*_ ) in enumerate(clips)]
anns = []
for k,(n,*_) in enumerate(clips):
    for j in range(2):
        anns.append({"image_id": n, "caption": caps[(k+j) % len(caps)], "id": len(anns)})
json.dump({"videos": videos, "annotations": anns}, open("MSR_VTT.json","w"), ensure_ascii=False)
