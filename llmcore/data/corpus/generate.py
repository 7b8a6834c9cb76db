"""Regenerate the shipped English and Chinese corpora: ``python -m llmcore.data.corpus.generate``.

The texts are original: short children's stories and plain factual paragraphs, assembled by a
seeded ``random.Random`` from hand-written sentence patterns and word lists in this file. The
patterns repeat (so a model of a few thousand parameters can learn them in seconds) while the
word choices vary (so it has to learn spelling and agreement, not memorise one string).

``random.Random`` with an integer seed draws the same sequence across CPython versions (checked on
3.10 to 3.13), so running this script reproduces ``english.txt`` and ``chinese.txt`` byte for byte;
``tests/test_corpus.py`` checks the committed files against it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

__all__ = ["english_text", "chinese_text", "TARGET_BYTES", "SEED", "write_corpora"]

SEED = 2017
TARGET_BYTES = 200_000

# ----------------------------------------------------------------------------------------------
# English
# ----------------------------------------------------------------------------------------------

EN_NAMES = (
    "Mia", "Leo", "Ava", "Sam", "Nora", "Ben", "Lily", "Omar", "Zoe", "Finn", "Ruby", "Hugo",
    "Ivy", "Max", "Ella", "Theo", "Maya", "Jack", "Rosa", "Eli", "Kai", "Lena", "Tom", "Anna",
)
# (singular, plural)
EN_ANIMALS = (
    ("rabbit", "rabbits"), ("fox", "foxes"), ("bear", "bears"), ("duck", "ducks"), ("mouse", "mice"),
    ("owl", "owls"), ("turtle", "turtles"), ("squirrel", "squirrels"), ("hedgehog", "hedgehogs"),
    ("frog", "frogs"), ("goat", "goats"), ("otter", "otters"), ("deer", "deer"), ("pig", "pigs"),
)
EN_HOMES = (
    "in a hole under an old oak tree", "in a small house by the river", "at the edge of a quiet forest",
    "on a farm behind the hill", "in a cave near the sea", "in a garden full of roses",
    "in a village in the mountains", "beside a pond with many lily pads",
)
EN_LIKES = (
    "collect shiny stones", "sing songs in the morning", "read books under a tree", "paint pictures of clouds",
    "bake bread with honey", "count the stars at night", "build towers of sticks", "run races with the wind",
    "plant seeds in the garden", "watch the boats on the river", "fly a red kite", "tell jokes to the birds",
)
EN_TIMES = ("morning", "afternoon", "evening", "sunny day", "rainy day", "cold morning", "windy afternoon")
EN_LOST = (
    ("a blue ball", "it"), ("a warm hat", "it"), ("a little map", "it"), ("three golden keys", "they"),
    ("a basket of apples", "it"), ("a silver bell", "it"), ("two red boots", "they"), ("a paper boat", "it"),
)
EN_SEARCH_PLACES = (
    "behind the big rock", "under the bridge", "near the old well", "in the tall grass",
    "at the top of the hill", "inside a hollow log", "next to the blue gate", "by the river bank",
)
EN_ENDINGS = (
    "From that day on, the two friends played together every {time}.",
    "That night, {name} slept well and dreamed of {like_short}.",
    "{name} learned that it is good to ask a friend for help.",
    "Everyone laughed, and {name} felt {feeling} all day.",
    "{name} said thank you, and they shared a snack by the fire.",
    "After that, {name} always kept {object} in a safe place.",
)
EN_LIKE_SHORT = ("stars", "clouds", "rivers", "songs", "kites", "gardens", "boats", "mountains")

# (plural, habitat, food, fact)
EN_FACTS = (
    ("Bears", "forests and mountains", "berries, roots and fish", "they sleep through much of the winter"),
    ("Owls", "woods and old barns", "mice and insects", "they can turn their heads very far"),
    ("Frogs", "ponds and wet grass", "flies and worms", "they start life as tadpoles in the water"),
    ("Otters", "rivers and coasts", "fish and crabs", "they hold hands while they sleep in the water"),
    ("Squirrels", "parks and forests", "nuts and seeds", "they bury food and dig it up later"),
    ("Turtles", "lakes, rivers and the sea", "plants and small animals", "they carry their shell all their life"),
    ("Bees", "gardens and meadows", "nectar and pollen", "they make honey and help flowers grow"),
    ("Camels", "hot deserts", "dry plants and leaves", "they can walk for days without water"),
    ("Penguins", "cold southern seas", "fish and krill", "they cannot fly but they swim very well"),
    ("Elephants", "grasslands and forests", "grass, bark and fruit", "they use their trunks to drink and to greet"),
    ("Whales", "the open ocean", "krill and small fish", "they breathe air through a hole on their head"),
    ("Ants", "tunnels under the ground", "seeds and sweet things", "they work together in large groups"),
)
EN_SCIENCE = (
    "Water freezes at zero degrees Celsius and boils at one hundred degrees.",
    "The sun is a star, and the earth goes around it once a year.",
    "The moon has no light of its own; it shines with light from the sun.",
    "Plants make their food from sunlight, water and air.",
    "A day has twenty-four hours, and an hour has sixty minutes.",
    "Rain falls when tiny drops of water in a cloud join together and grow heavy.",
    "Sound travels through the air as a wave.",
    "A rainbow appears when sunlight passes through drops of rain.",
    "The heart pumps blood through the body all day and all night.",
    "Ice is lighter than liquid water, so it floats.",
    "Magnets pull on iron and steel but not on wood or paper.",
    "Seeds need water, warmth and light to grow into plants.",
)
EN_SEASONS = (
    ("spring", "flowers open and birds build nests"),
    ("summer", "the days are long and the air is warm"),
    ("autumn", "leaves turn red and gold and fall from the trees"),
    ("winter", "the nights are long and snow may cover the ground"),
)


def _capital(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


def _english_story(rng: random.Random) -> str:
    name, friend = rng.sample(EN_NAMES, 2)
    (animal, _), (friend_animal, _) = rng.sample(EN_ANIMALS, 2)
    lost, pronoun = rng.choice(EN_LOST)
    verb = "was" if pronoun == "it" else "were"
    time = rng.choice(EN_TIMES)
    first_place, second_place = rng.sample(EN_SEARCH_PLACES, 2)
    article = "an" if animal[0] in "aeiou" else "a"
    friend_article = "an" if friend_animal[0] in "aeiou" else "a"
    sentences = [
        f"Once upon a time, there was {article} {animal} named {name}.",
        f"{name} lived {rng.choice(EN_HOMES)}.",
        f"Every day, {name} liked to {rng.choice(EN_LIKES)}.",
        f"One {time}, {name} could not find {lost}.",
        f"{name} felt {rng.choice(('sad', 'worried', 'upset'))} and looked {first_place}.",
        f"But {pronoun} {verb} not there.",
        f"Then {name} met {friend_article} {friend_animal} named {friend}.",
        f'"Can you help me?" asked {name}. "Yes, of course," said {friend}.',
        f"Together they looked {second_place}, and there {pronoun} {verb}!",
        rng.choice(EN_ENDINGS).format(
            name=name, time=rng.choice(("morning", "evening", "day")), like_short=rng.choice(EN_LIKE_SHORT),
            feeling=rng.choice(("happy", "proud", "glad")), object=lost,
        ),
    ]
    return " ".join(sentences)


def _english_fact(rng: random.Random) -> str:
    plural, habitat, food, fact = rng.choice(EN_FACTS)
    season, season_fact = rng.choice(EN_SEASONS)
    sentences = [
        f"{plural} live in {habitat}.",
        f"They eat {food}.",
        f"One surprising thing about {plural.lower()} is that {fact}.",
        f"In {season}, {season_fact}.",
        rng.choice(EN_SCIENCE),
    ]
    rng.shuffle(sentences[3:])
    return " ".join(sentences)


def _english_count(rng: random.Random) -> str:
    name = rng.choice(EN_NAMES)
    animal, animals = rng.choice(EN_ANIMALS)
    numbers = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    first, second = rng.randrange(1, 6), rng.randrange(1, 5)
    place = rng.choice(("field", "garden", "park", "woods"))
    return (
        f"{name} saw {numbers[first - 1]} {animals if first > 1 else animal} in the {place}. "
        f"Then {numbers[second - 1]} more came. "
        f"Now there are {numbers[first + second - 1]}. "
        f"{_capital(numbers[first - 1])} plus {numbers[second - 1]} is {numbers[first + second - 1]}."
    )


EN_SKIES = ("clear and blue", "grey and cloudy", "pink with the sunrise", "full of white clouds", "dark with rain")
EN_OUTINGS = (
    ("the beach", "built a castle of sand and looked for shells"),
    ("the market", "bought carrots, bread and a jar of jam"),
    ("the library", "read a book about ships and another about the moon"),
    ("the meadow", "chased butterflies and rolled down the grass"),
    ("the lake", "fed the ducks and skipped flat stones on the water"),
    ("the old mill", "listened to the wheel turn and the water splash"),
)
EN_MEALS = ("apple pie", "warm soup", "cheese and bread", "rice with beans", "berries and cream", "carrot cake")
EN_EVENINGS = (
    "wrote about the day in a small notebook", "told the family everything that happened",
    "drank a cup of milk and went to bed early", "drew a picture of the best moment",
)


def _english_day(rng: random.Random) -> str:
    name, friend = rng.sample(EN_NAMES, 2)
    animal, _ = rng.choice(EN_ANIMALS)
    place, activity = rng.choice(EN_OUTINGS)
    return (
        f"{name} the {animal} woke up early. The sky was {rng.choice(EN_SKIES)}. "
        f"After breakfast, {name} and {friend} went to {place}. There they {activity}. "
        f"At noon they ate {rng.choice(EN_MEALS)}. "
        f"In the evening, {name} went home and {rng.choice(EN_EVENINGS)}."
    )


def english_text(seed: int = SEED, target_bytes: int = TARGET_BYTES) -> str:
    """Stories, facts and counting sums, paragraphs separated by a blank line, until ``target_bytes``."""
    rng = random.Random(seed)
    makers: tuple[Callable[[random.Random], str], ...] = (_english_story, _english_day, _english_fact, _english_count)
    return _assemble(rng, makers, target_bytes)


# ----------------------------------------------------------------------------------------------
# Chinese (中文)
# ----------------------------------------------------------------------------------------------

ZH_NAMES = ("小明", "小红", "小华", "小丽", "小刚", "小雨", "小兰", "小军", "小芳", "小林", "小月", "小星")
ZH_ANIMALS = ("小兔子", "小狐狸", "小熊", "小鸭子", "小老鼠", "猫头鹰", "小乌龟", "小松鼠", "小青蛙", "小山羊", "小猪", "小鹿")
ZH_HOMES = (
    "住在大树下的小洞里", "住在河边的小房子里", "住在安静的森林旁边", "住在山后的农场里",
    "住在海边的山洞里", "住在开满玫瑰的花园里", "住在山里的小村子里", "住在荷花池的旁边",
)
ZH_LIKES = (
    "捡漂亮的石头", "早上唱歌", "在树下看书", "画天上的白云", "做蜂蜜面包", "晚上数星星",
    "用树枝搭高塔", "和风一起赛跑", "春天种种子", "看河上的小船", "放红色的风筝", "给小鸟讲笑话",
)
ZH_TIMES = ("一天早上", "一天下午", "一天晚上", "一个晴天", "一个下雨天", "一个寒冷的早上", "一个刮风的下午")
ZH_LOST = ("蓝色的小球", "暖和的帽子", "一张小地图", "三把金钥匙", "一篮苹果", "银色的小铃铛", "一双红靴子", "一只纸船")
ZH_PLACES = ("大石头后面", "小桥下面", "老井旁边", "高高的草丛里", "小山顶上", "空心的木头里", "蓝色的门旁边", "河岸边")
ZH_ENDINGS = (
    "从那天起，两个好朋友每天都一起玩。",
    "那天晚上，{name}睡得很香，还梦见了{dream}。",
    "{name}明白了，遇到困难可以请朋友帮忙。",
    "大家都笑了，{name}一整天都很开心。",
    "{name}说了谢谢，他们一起在火边吃点心。",
    "从此以后，{name}总是把{object}放在安全的地方。",
)
ZH_DREAMS = ("星星", "白云", "小河", "大海", "风筝", "花园", "小船", "高山")

# (名称, 住处, 食物, 特点)
ZH_FACTS = (
    ("熊", "森林和高山", "浆果、树根和鱼", "冬天的大部分时间都在睡觉"),
    ("猫头鹰", "树林和旧谷仓", "老鼠和昆虫", "头可以转得很远"),
    ("青蛙", "池塘和湿草地", "苍蝇和小虫", "小时候是水里的蝌蚪"),
    ("水獭", "河流和海岸", "鱼和螃蟹", "睡觉的时候会在水里手拉手"),
    ("松鼠", "公园和森林", "坚果和种子", "会把食物埋起来，以后再挖出来"),
    ("乌龟", "湖泊、河流和大海", "植物和小动物", "一辈子都背着自己的壳"),
    ("蜜蜂", "花园和草地", "花蜜和花粉", "会酿蜂蜜，还能帮助花朵结果"),
    ("骆驼", "炎热的沙漠", "干草和树叶", "可以好几天不喝水"),
    ("企鹅", "寒冷的南方海洋", "鱼和磷虾", "不会飞，但是游泳游得很好"),
    ("大象", "草原和森林", "草、树皮和果子", "用长鼻子喝水，也用它打招呼"),
    ("鲸鱼", "辽阔的大海", "磷虾和小鱼", "用头顶上的小孔呼吸空气"),
    ("蚂蚁", "地下的隧道", "种子和甜的东西", "成群结队地一起工作"),
)
ZH_SCIENCE = (
    "水在零摄氏度结冰，在一百摄氏度沸腾。",
    "太阳是一颗恒星，地球每年绕着太阳转一圈。",
    "月亮自己不会发光，它反射的是太阳的光。",
    "植物用阳光、水和空气给自己制造食物。",
    "一天有二十四个小时，一个小时有六十分钟。",
    "云里的小水滴聚在一起变重了，就会落下来变成雨。",
    "声音以波的形式在空气中传播。",
    "阳光穿过雨滴的时候，天上就会出现彩虹。",
    "心脏日日夜夜不停地把血液送到全身。",
    "冰比水轻，所以冰会浮在水面上。",
    "磁铁能吸住铁和钢，但吸不住木头和纸。",
    "种子需要水、温暖和阳光才能长成植物。",
)
ZH_SEASONS = (
    ("春天", "花儿开了，小鸟开始搭窝"),
    ("夏天", "白天很长，空气很温暖"),
    ("秋天", "树叶变成红色和金色，从树上落下来"),
    ("冬天", "夜晚很长，地上可能盖满了雪"),
)
ZH_DIGITS = "一二三四五六七八九十"


def _chinese_story(rng: random.Random) -> str:
    name, friend = rng.sample(ZH_NAMES, 2)
    animal, friend_animal = rng.sample(ZH_ANIMALS, 2)
    lost = rng.choice(ZH_LOST)
    first_place, second_place = rng.sample(ZH_PLACES, 2)
    sentences = [
        f"从前，有一只{animal}，名字叫{name}。",
        f"{name}{rng.choice(ZH_HOMES)}。",
        f"{name}每天都喜欢{rng.choice(ZH_LIKES)}。",
        f"{rng.choice(ZH_TIMES)}，{name}找不到{lost}了。",
        f"{name}很{rng.choice(('难过', '着急', '担心'))}，先去{first_place}找了找。",
        "可是那里什么也没有。",
        f"这时，{name}遇到了一只{friend_animal}，名字叫{friend}。",
        f"“你能帮帮我吗？”{name}问。“当然可以！”{friend}说。",
        f"他们一起到{second_place}去找，{lost}果然在那里！",
        rng.choice(ZH_ENDINGS).format(name=name, dream=rng.choice(ZH_DREAMS), object=lost),
    ]
    return "".join(sentences)


def _chinese_fact(rng: random.Random) -> str:
    animal, habitat, food, fact = rng.choice(ZH_FACTS)
    season, season_fact = rng.choice(ZH_SEASONS)
    sentences = [
        f"{animal}生活在{habitat}。",
        f"它们吃{food}。",
        f"{animal}有一个有趣的地方：它们{fact}。",
        f"到了{season}，{season_fact}。",
        rng.choice(ZH_SCIENCE),
    ]
    rng.shuffle(sentences[3:])
    return "".join(sentences)


def _zh_count(n: int) -> str:
    """A number before a measure word: 两只, not 二只."""
    return "两" if n == 2 else ZH_DIGITS[n - 1]


def _chinese_count(rng: random.Random) -> str:
    name = rng.choice(ZH_NAMES)
    animal = rng.choice(ZH_ANIMALS)
    first, second = rng.randrange(1, 6), rng.randrange(1, 5)
    place = rng.choice(("田野里", "花园里", "公园里", "树林里"))
    total = ZH_DIGITS[first + second - 1]
    return (
        f"{name}在{place}看见了{_zh_count(first)}只{animal}。"
        f"后来又来了{_zh_count(second)}只。"
        f"现在一共有{_zh_count(first + second)}只。"
        f"{ZH_DIGITS[first - 1]}加{ZH_DIGITS[second - 1]}等于{total}。"
    )


ZH_SKIES = ("蓝蓝的", "灰蒙蒙的", "被朝霞染成了粉红色", "飘着很多白云", "乌云密布")
ZH_OUTINGS = (
    ("海边", "用沙子堆城堡，还捡了很多贝壳"),
    ("集市", "买了胡萝卜、面包和一罐果酱"),
    ("图书馆", "看了一本讲轮船的书和一本讲月亮的书"),
    ("草地", "追蝴蝶，在草地上打滚"),
    ("湖边", "喂小鸭子，还往水面上打水漂"),
    ("老磨坊", "听水车转动，看水花飞溅"),
)
ZH_MEALS = ("苹果派", "热汤", "馒头和鸡蛋", "米饭和青菜", "饺子", "胡萝卜蛋糕")
ZH_EVENINGS = ("把今天的事写在小本子上", "把发生的一切都讲给家人听", "喝了一杯牛奶，早早上床睡觉", "画下了今天最开心的时刻")


def _chinese_day(rng: random.Random) -> str:
    name, friend = rng.sample(ZH_NAMES, 2)
    animal = rng.choice(ZH_ANIMALS)
    place, activity = rng.choice(ZH_OUTINGS)
    return (
        f"{animal}{name}很早就起床了。天空{rng.choice(ZH_SKIES)}。"
        f"吃过早饭，{name}和{friend}一起去了{place}。他们在那里{activity}。"
        f"中午，他们吃了{rng.choice(ZH_MEALS)}。"
        f"晚上，{name}回到家，{rng.choice(ZH_EVENINGS)}。"
    )


def chinese_text(seed: int = SEED, target_bytes: int = TARGET_BYTES) -> str:
    """故事、常识和数数小段落 (stories, facts, counting), separated by a blank line, until ``target_bytes``."""
    rng = random.Random(seed)
    makers: tuple[Callable[[random.Random], str], ...] = (_chinese_story, _chinese_day, _chinese_fact, _chinese_count)
    return _assemble(rng, makers, target_bytes)


def _assemble(rng: random.Random, makers: tuple[Callable[[random.Random], str], ...], target_bytes: int) -> str:
    """Draw a paragraph maker per paragraph until the UTF-8 size reaches ``target_bytes``."""
    paragraphs: list[str] = []
    size = 0
    while size < target_bytes:
        paragraph = rng.choice(makers)(rng)
        paragraphs.append(paragraph)
        size += len(paragraph.encode("utf-8")) + 2
    return "\n\n".join(paragraphs) + "\n"


def write_corpora(folder: Path = Path(__file__).parent) -> None:
    """Write ``english.txt`` and ``chinese.txt`` (UTF-8, ``\\n`` line ends) into ``folder``."""
    for name, text in (("english", english_text()), ("chinese", chinese_text())):
        (folder / f"{name}.txt").write_text(text, encoding="utf-8", newline="\n")


if __name__ == "__main__":
    write_corpora()
